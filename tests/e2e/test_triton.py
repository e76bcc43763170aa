"""The `triton` engine against a real Triton server on loopback (tests/triton_server.py): the
same outputs as the onnxruntime engine on every graph kind, served through Ray Serve, and the
documented errors (server down, model missing, timeout) while other apps keep serving."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import make_image, serve_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from triton_server import start_triton, triton_home

from promptserve import Client, ServerOverloaded
from promptserve.exporters.triton import TritonOptions, write_model_repository
from promptserve.models.clip.deep_prompts import DeepPrompts, VisualPromptBatch
from promptserve.models.clip.runtime import ClipGraphs
from promptserve.serving.engines.base import EngineOptions, TritonClientOptions
from promptserve.serving.errors import BackendUnavailable

pytestmark = pytest.mark.skipif(
    triton_home() is None, reason="no tritonserver: PROMPTSERVE_TRITON_HOME unset (.ci/run sets it)"
)


@pytest.fixture(scope="module")
def repository(tiny_bundle, tmp_path_factory):
    repo = tmp_path_factory.mktemp("triton-repo")
    options = TritonOptions(backend="python", instance_kind="KIND_CPU", max_queue_delay_us=500)
    write_model_repository(tiny_bundle, repo, options)
    return repo


@pytest.fixture(scope="module")
def triton(repository, tmp_path_factory):
    server = start_triton(repository, tmp_path_factory.mktemp("triton"))
    yield server
    server.stop()


def _engine(bundle, url: str, **triton):
    options = EngineOptions(triton=TritonClientOptions(url=url, **triton))
    return ClipGraphs.create("triton", bundle, options)


@pytest.fixture
def engines():
    """Engines a test creates, closed after it (connections, shared-memory registrations)."""
    made = []
    yield made
    for engine in made:
        engine.close()


@pytest.mark.parametrize(
    ("protocol", "shared_memory"), [("grpc", "none"), ("http", "none"), ("grpc", "system")]
)
def test_engine_matches_onnxruntime(triton, tiny_bundle, engines, protocol, shared_memory):
    url = triton.grpc_url if protocol == "grpc" else triton.http_url
    remote = _engine(tiny_bundle, url, protocol=protocol, shared_memory=shared_memory)
    engines.append(remote)
    local = ClipGraphs.create("onnxruntime", tiny_bundle)
    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((3, 3, 224, 224)).astype(np.float32)
    np.testing.assert_allclose(remote.encode_image(pixels), local.encode_image(pixels), atol=1e-5)
    texts = ["a photo of a cat.", "a diagram"]
    np.testing.assert_allclose(
        remote.text_tower.encode_texts(texts), local.text_tower.encode_texts(texts), atol=1e-5
    )
    slots = tiny_bundle.manifest.config.deep_prompts
    prompts = DeepPrompts(rng.standard_normal((2, 3, slots.vision_width)).astype(np.float32))
    batch = VisualPromptBatch.stack(
        [prompts, None, prompts], layers=slots.vision_layers, width=slots.vision_width
    )
    np.testing.assert_allclose(
        remote.encode_image(pixels, batch), local.encode_image(pixels, batch), atol=1e-5
    )
    # the prompted text graph (unbatched in Triton: its deep prompts are per call)
    width = tiny_bundle.manifest.config.text_width
    deep = DeepPrompts(rng.standard_normal((2, 4, width)).astype(np.float32))
    ids = local.text_tower.tokenizer(["X X X X cat.", "X X X X dog."])
    emb, eot = local.text_tower.embed_tokens(ids), ids.argmax(-1)
    np.testing.assert_allclose(
        remote.text_tower.encode(emb, eot, deep), local.text_tower.encode(emb, eot, deep), atol=1e-5
    )
    for graph in ("anomaly", "segment_sclip"):
        for got, want in zip(
            remote.encode_dense(graph, pixels), local.encode_dense(graph, pixels), strict=True
        ):
            np.testing.assert_allclose(got, want, atol=1e-5)


def _registered(triton) -> set[str]:
    """System shared-memory regions the server holds registered, by name."""
    import tritonclient.http as tc

    status = tc.InferenceServerClient(triton.http_url).get_system_shared_memory_status()
    return {region["name"] for region in status}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_shared_memory_regions_grow_and_are_released(triton, tiny_bundle, protocol):
    """Tensors go through regions the server has registered; a larger batch re-registers larger
    regions and gets the right outputs; close() unregisters everything."""
    url = triton.grpc_url if protocol == "grpc" else triton.http_url
    remote = _engine(tiny_bundle, url, protocol=protocol, shared_memory="system")
    local = ClipGraphs.create("onnxruntime", tiny_bundle)
    rng = np.random.default_rng(1)
    try:
        small = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
        np.testing.assert_allclose(remote.encode_image(small), local.encode_image(small), atol=1e-5)
        first = remote.engine._shm.registered()
        assert len(first) == 2 and first <= _registered(triton)  # pixel_values, image_embeds
        large = rng.standard_normal((5, 3, 224, 224)).astype(np.float32)
        np.testing.assert_allclose(remote.encode_image(large), local.encode_image(large), atol=1e-5)
        grown = remote.engine._shm.registered()
        assert len(grown) == 2 and not grown & first and grown <= _registered(triton)
        assert not first & _registered(triton)  # the outgrown regions were unregistered
    finally:
        remote.close()
    assert not grown & _registered(triton)


def test_concurrent_calls_share_the_connection_pool(triton, tiny_bundle, engines):
    """Many threads on one engine (two gRPC channels, shared memory) each get their own
    batch's outputs: slots keep concurrent calls' regions apart."""
    from concurrent.futures import ThreadPoolExecutor

    remote = _engine(tiny_bundle, triton.grpc_url, connections=2, shared_memory="system")
    engines.append(remote)
    local = ClipGraphs.create("onnxruntime", tiny_bundle)
    rng = np.random.default_rng(2)
    batches = [rng.standard_normal((1 + i % 3, 3, 224, 224)).astype(np.float32) for i in range(12)]
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(remote.encode_image, batches))
    for g, batch in zip(got, batches, strict=True):
        np.testing.assert_allclose(g, local.encode_image(batch), atol=1e-5)
    assert len(remote.engine._clients) == 2


def test_clear_errors_when_triton_cannot_serve(triton, tiny_bundle, engines):
    with pytest.raises(BackendUnavailable, match="unreachable"):
        _engine(tiny_bundle, "127.0.0.1:9")  # nothing listens there
    with pytest.raises(BackendUnavailable, match="no ready model"):
        _engine(tiny_bundle, triton.grpc_url, model_prefix="other")
    slow = _engine(tiny_bundle, triton.grpc_url, timeout_s=1e-4, retries=0, shared_memory="system")
    engines.append(slow)
    with pytest.raises(BackendUnavailable, match=r"promptserve_vision.*timed out"):
        slow.encode_image(np.zeros((1, 3, 224, 224), np.float32))
    # Triton may still write the timed-out call's outputs: its regions are dropped, not reused,
    # and unregistered from the server by close() at the latest
    assert not any(slot for free in slow.engine._shm._free.values() for slot in free)
    slow.close()
    assert not {r for r in _registered(triton) if r.startswith(slow.engine._shm._prefix)}


def test_only_connection_failures_are_retried():
    from tritonclient.utils import InferenceServerException

    from promptserve.serving.engines.triton import _retryable

    assert _retryable(InferenceServerException("refused", status="StatusCode.UNAVAILABLE"))
    assert _retryable(ConnectionRefusedError())
    assert not _retryable(InferenceServerException("bad", status="StatusCode.INVALID_ARGUMENT"))
    assert not _retryable(InferenceServerException("no model", status="400"))


def test_served_through_ray_serve_and_down_server(
    ray_cluster, server, tiny_bundle, repository, tmp_path
):
    """An app on the triton engine (two batches in flight) answers as the onnxruntime app does;
    when its Triton goes away it answers 503 backend_unavailable and /readyz fails, while the
    other app serves."""
    from ray import serve

    from promptserve.serving.app import build_app

    own = start_triton(repository, tmp_path / "own")  # this test stops it
    cfg = serve_config(
        tiny_bundle.dir, tmp_path / "store", name="triton-app", route_prefix="/triton",
        topology="fused", engine={"name": "triton", "triton": {"url": own.grpc_url}},
        encoder={"num_cpus": 0.25, "max_inflight_batches": 2}, gateway={"num_cpus": 0.0},
    )  # fmt: skip
    serve.run(build_app(cfg), name="triton-app", route_prefix="/triton", blocking=False)
    base = ray_cluster["base_url"]
    try:
        images = [make_image(61), make_image(62)]
        with Client(f"{base}/triton") as c, Client(base) as reference:
            got = c.classify(images, labels=["cat", "dog"], return_logits=True)
            want = reference.classify(images, labels=["cat", "dog"], return_logits=True)
        for g, w in zip(got.results, want.results, strict=True):
            np.testing.assert_allclose(g.logits, w.logits, atol=1e-4)
        assert httpx.get(f"{base}/triton/readyz", timeout=30).status_code == 200
        own.stop()
        with Client(f"{base}/triton", max_retries=0) as c, pytest.raises(ServerOverloaded) as err:
            c.classify(make_image(63), labels=["cat"])
        assert err.value.status_code == 503 and "Triton" in str(err.value)
        assert httpx.get(f"{base}/triton/readyz", timeout=30).status_code == 503
        with Client(base) as other:  # the onnxruntime app keeps serving
            assert other.classify(make_image(64), labels=["cat"]).results[0].top
        # Serve's own health probe sees it too (the replica's check_health), not only /readyz
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            status = serve.status().applications["triton-app"].deployments["gateway"].status
            if status != "HEALTHY":
                break
            time.sleep(1)
        assert status != "HEALTHY", "Serve still reports the replica healthy with Triton down"
    finally:
        own.stop()
        serve.delete("triton-app")
