"""Session fixtures: one tiny seeded backbone, one exported bundle, one Ray cluster.

The tiny backbone is written to a weights file and loaded through the same code path as real
weights. Ray starts once per session (it takes seconds and two cores are all CI has) and is
always shut down.
"""

from __future__ import annotations

import io
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TQDM_DISABLE", "1")

API_KEY = "test-secret-key"
LLM_ADMIN = "llm-admin-key"
ANOMALY_TAPS = (1, 2, 3)
WINCLIP_SCALES = (2, 3)
SEGMENT_METHODS = ("sclip", "clearclip", "maskclip")  # the served default first


@pytest.fixture(scope="session")
def tiny_spec(tmp_path_factory):
    from promptserve.models.clip.export.seeded import seeded_backbone

    return seeded_backbone(directory=tmp_path_factory.mktemp("backbones"), seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_spec):
    return tiny_spec.load()


@pytest.fixture(scope="session")
def tiny_bundle(tiny_spec, tmp_path_factory):
    from promptserve.models.bundle import Bundle
    from promptserve.models.clip.bundle import AnomalyGraphSpec, SegmentGraphSpec, WinCLIPGraphSpec
    from promptserve.models.clip.export.onnx import export_bundle

    out = tmp_path_factory.mktemp("bundle")
    # with AnomalyCLIP's dense graph at the tiny ViT's size (DPAM on its last 2 of 3 blocks)
    # and WinCLIP's window graph, and the three segmentation graphs
    anomaly = AnomalyGraphSpec(image_size=224, taps=ANOMALY_TAPS, dpam_layer=3)
    winclip = WinCLIPGraphSpec(scales=WINCLIP_SCALES)
    segment = [SegmentGraphSpec(method=m) for m in SEGMENT_METHODS]
    export_bundle(tiny_spec, out, progress=False, anomaly=anomaly, winclip=winclip, segment=segment)
    return Bundle(out)


def make_image(seed: int, size: tuple[int, int] = (320, 240), fmt: str = "JPEG") -> bytes:
    """A deterministic photo-like image (smooth gradients + noise) as file bytes."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack(
        [(xx * (c + 1) * 0.7 + yy * (3 - c) * 0.5 + seed * 37) % 256 for c in range(3)], -1
    )
    img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt)
    return buf.getvalue()


def assert_served_maps(images, results, head, encode, preprocess) -> None:
    """Served anomaly results equal the same computation without the server: squash-resize to
    224, normalise, the dense graph (`encode`), the head, the map resized back to the image."""
    from promptserve.models.clip.maps import resize_bilinear

    for img_bytes, result in zip(images, results, strict=True):
        img = Image.open(io.BytesIO(img_bytes)).convert("RGB")
        crop = np.asarray(img.resize((224, 224), Image.BICUBIC), np.float32) / 255.0
        pixels = ((crop - preprocess.mean) / preprocess.std).transpose(2, 0, 1)[None]
        scores, dense = head.outputs(*encode(pixels.astype(np.float32)))
        want = resize_bilinear(dense[0], (img.height, img.width))
        np.testing.assert_allclose(result.score, scores[0], atol=1e-4)
        np.testing.assert_allclose(result.anomaly_map(), want, atol=2e-3)  # float16 on the wire


@pytest.fixture(scope="session")
def images() -> list[bytes]:
    return [make_image(i, size=(320 + 16 * i, 240 + 8 * (i % 3))) for i in range(6)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory) -> Iterator[dict]:
    """A local Ray cluster with Serve on a free loopback port and a metrics export port."""
    ray = pytest.importorskip("ray")
    from ray import serve

    metrics_port, http_port = _free_port(), _free_port()
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        _metrics_export_port=metrics_port,
        _system_config={"metrics_report_interval_ms": 1000},
        runtime_env={"env_vars": {"TQDM_DISABLE": "1"}},
    )
    serve.start(http_options={"host": "127.0.0.1", "port": http_port})
    try:
        yield {
            "http_port": http_port,
            "metrics_port": metrics_port,
            "base_url": f"http://127.0.0.1:{http_port}",
        }
    finally:
        serve.shutdown()
        ray.shutdown()


def serve_config(bundle: Path, store: Path, **overrides):
    from promptserve.serving.config import AppConfig

    base = {
        "bundle": str(bundle),
        "prompts": {"store": str(store)},
        "encoder": {"max_batch_size": 16, "batch_wait_timeout_s": 0.05, "num_cpus": 0.5},
        "gateway": {"num_cpus": 0.5},
        "limits": {"max_images_per_request": 12, "max_body_bytes": 4 << 20, "max_labels": 50},
    }
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return AppConfig.model_validate(base)


@pytest.fixture(scope="session")
def server(ray_cluster, tiny_bundle, tmp_path_factory) -> dict:
    """Three apps on one Serve instance: the default at `/`, one requiring an API key at
    `/secure`, and one whose encoder admits 2 images at a time at `/tight` (to provoke 503s)."""
    from ray import serve

    from promptserve.serving.app import build_app

    cfg = serve_config(tiny_bundle.dir, tmp_path_factory.mktemp("store"), prompts={"max_loaded": 2})
    serve.run(build_app(cfg), name="promptserve", route_prefix="/", blocking=False)
    # The secure app also runs the fused topology (gateway and encoder in one replica).
    secure = serve_config(
        tiny_bundle.dir,
        tmp_path_factory.mktemp("store-secure"),
        auth={"admin_keys": [API_KEY], "api_keys_env": None, "admin_keys_env": None},
        topology="fused",
    )
    serve.run(build_app(secure), name="secure", route_prefix="/secure", blocking=False)
    # The tight app also keeps Ray Serve's own batcher (`encoder.batcher: serve`) exercised.
    tight = serve_config(
        tiny_bundle.dir,
        tmp_path_factory.mktemp("store-tight"),
        encoder={"batcher": "serve", "max_queued_images": 2},
    )
    serve.run(build_app(tight), name="tight", route_prefix="/tight", blocking=False)
    base = ray_cluster["base_url"]
    return {
        **ray_cluster,
        "config": cfg,
        "secure_url": base + "/secure",
        "tight_url": base + "/tight",
    }


# -- the llm family: tiny seeded causal LMs, saved as Hugging Face folders ---------------------


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory) -> Path:
    """A tiny Llama (seed 0) as a model folder: load it with `local-dir:PATH`."""
    from promptserve.models.llm.export.seeded import build_tiny_llm

    return build_tiny_llm(tmp_path_factory.mktemp("llm") / "tiny-llama", "llama", seed=0)


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory) -> Path:
    """A tiny Qwen2 (seed 0) as a model folder."""
    from promptserve.models.llm.export.seeded import build_tiny_llm

    return build_tiny_llm(tmp_path_factory.mktemp("llm") / "tiny-qwen2", "qwen2", seed=0)


@pytest.fixture(scope="session")
def tiny_llm_bundle(tiny_llm_dir, tmp_path_factory) -> Path:
    """The exported bundle directory of `tiny_llm_dir` (open it with `Bundle(path)`)."""
    from promptserve.models.llm.export.onnx import export_bundle

    return export_bundle(
        f"local-dir:{tiny_llm_dir}", tmp_path_factory.mktemp("llm-bundle"), progress=False
    )


@pytest.fixture(scope="session")
def tiny_qwen_bundle(tiny_qwen_dir, tmp_path_factory) -> Path:
    """The exported bundle directory of `tiny_qwen_dir`."""
    from promptserve.models.llm.export.onnx import export_bundle

    return export_bundle(
        f"local-dir:{tiny_qwen_dir}", tmp_path_factory.mktemp("qwen-bundle"), progress=False
    )


@pytest.fixture(scope="session")
def llm_server(ray_cluster, tiny_llm_bundle, tmp_path_factory):
    """The LLM app at /llm: split topology, the embedded index engine under a temp dir, a
    small token budget so batches split into length buckets, and the llama3 PromptReps prompt
    registered as `reps`."""
    from ray import serve

    from promptserve import Client
    from promptserve.models.bundle import Bundle
    from promptserve.models.llm.artifacts import builtin_prompt
    from promptserve.serving.app import build_app

    root = tmp_path_factory.mktemp("llm")
    cfg = serve_config(
        tiny_llm_bundle,
        root / "store",
        index={"path": str(root / "indexes")},
        # beside the CLIP `server` apps on the 4-CPU test cluster: these replicas mostly wait
        encoder={"max_batch_tokens": 1024, "num_cpus": 0.25},
        gateway={"num_cpus": 0.25},
        indexer={"num_cpus": 0.25},
        # no logical CPU of its own: the test cluster's 4 are spoken for by the other apps
        # and the ones tests deploy (Ray's CPU count is bookkeeping; it still computes)
        generator={"num_cpus": 0.0, "max_batch_rows": 8, "max_tokens": 512},
        limits={"max_texts_per_request": 32, "max_k": 50, "max_document_chars": 4000},
        auth={"admin_keys": [LLM_ADMIN], "api_keys_env": None, "admin_keys_env": None},
    )
    serve.run(build_app(cfg), name="llm", route_prefix="/llm", blocking=False)
    url = ray_cluster["base_url"] + "/llm"
    backbone = Bundle(tiny_llm_bundle).backbone_id
    with Client(url, api_key=LLM_ADMIN, timeout=120) as client:
        for _ in range(240):
            if client.health():
                break
            time.sleep(0.5)
        artifact = builtin_prompt("llama3", backbone)
        client.register_prompt(
            (json.loads(artifact.manifest.model_dump_json()), None), prompt_id="reps"
        )
    try:
        yield {
            "url": url,
            "config": cfg,
            "backbone": backbone,
            "artifact": artifact,
            "bundle": tiny_llm_bundle,
        }
    finally:
        serve.delete("llm")
