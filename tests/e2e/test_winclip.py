"""`POST /v1/anomaly` with an `object_name`: WinCLIP served zero-shot from the bundle's window
graph, its text embeddings cached per object name, requests for different objects sharing one
window batch; neither or both of prompt_id and object_name get a clear 400."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from conftest import WINCLIP_SCALES, assert_served_maps, make_image
from ray import serve

from promptserve import Client, InvalidInput
from promptserve.models.clip.methods.winclip import WinCLIPHead
from promptserve.models.clip.serve.calls import AnomalyCall, ObjectName
from promptserve.models.clip.serve.inputs import decode_resized


def test_winclip_maps_match_the_engine_computation(server, tiny_bundle):
    from promptserve.models.clip.runtime import ClipGraphs

    images = [make_image(11, (300, 200)), make_image(12, (180, 240), fmt="PNG")]
    with Client(server["base_url"]) as c:
        info = c.model_info()
        out = c.detect_anomalies(images, object_name="bottle")
    assert info.anomaly_methods == ["anomalyclip", "winclip"] and "anomaly" in info.tasks
    assert out.method == "winclip" and out.object_name == "bottle" and out.prompt_id is None
    maps = [r.anomaly_map() for r in out.results]
    assert maps[0].shape == (200, 300) and maps[1].shape == (240, 180)
    assert all(0 <= r.score <= 1 for r in out.results)
    assert all(m.min() >= 0 and m.max() <= 1 and m.std() > 1e-4 for m in maps)

    engine = ClipGraphs.create("onnxruntime", tiny_bundle)
    spec = tiny_bundle.manifest.config.winclip
    assert spec.scales == WINCLIP_SCALES
    head = WinCLIPHead.build(engine.text_tower, "bottle", spec=spec, image_size=224)
    assert_served_maps(
        images, out.results, head, engine.encode_windows, tiny_bundle.manifest.config.preprocess
    )


def test_object_name_changes_the_scores(server):
    image = make_image(13)
    with Client(server["base_url"]) as c:
        a = c.detect_anomalies(image, object_name="bottle").results[0]
        b = c.detect_anomalies(image, object_name="carpet").results[0]
    assert abs(a.score - b.score) > 1e-6


def test_object_names_share_one_window_batch(server, images):
    """Concurrent calls for different objects ride one window-graph batch and get what they
    get alone."""
    encoder = serve.get_deployment_handle("encoder", app_name="promptserve")
    crops, sizes = decode_resized(images, 224, server["config"].limits)
    calls = [
        AnomalyCall(crops=crops[0:2], sizes=tuple(sizes[0:2]), head=ObjectName("bottle")),
        AnomalyCall(crops=crops[2:3], sizes=tuple(sizes[2:3]), head=ObjectName("screw")),
        AnomalyCall(crops=crops[3:6], sizes=tuple(sizes[3:6]), head=ObjectName("bottle")),
    ]
    total = sum(len(c.crops) for c in calls)
    for c in calls:  # text embeddings computed before the timed calls
        encoder.detect_anomalies.remote(c).result()
    for _ in range(5):  # the batch window is 50 ms; on a loaded machine a call can miss it
        mixed = [r.result() for r in [encoder.detect_anomalies.remote(c) for c in calls]]
        if all(m["batch_images"] == [total] for m in mixed):
            break
    assert [m["batch_images"] for m in mixed] == [[total]] * len(calls), "never shared a batch"
    for call, got in zip(calls, mixed, strict=True):
        alone = encoder.detect_anomalies.remote(call).result()
        assert alone["batch_images"] == [len(call.crops)]
        np.testing.assert_allclose(
            [r["score"] for r in got["results"]], [r["score"] for r in alone["results"]], atol=1e-5
        )


def test_prompt_choice_errors(server):
    url = server["base_url"]
    image = make_image(14)
    with Client(url) as c:
        with pytest.raises(InvalidInput, match="exactly one"):
            c.detect_anomalies(image)
        with pytest.raises(InvalidInput, match="exactly one"):
            c.detect_anomalies(image, prompt_id="anomaly-ac", object_name="bottle")
        with pytest.raises(InvalidInput, match="object_name"):
            c.detect_anomalies(image, object_name="x" * 65)
    b64 = "bm90IGFuIGltYWdl"
    for body in (
        {"images": [b64]},
        {"images": [b64], "object_name": "bottle", "prompt_id": "p"},
        {"images": [b64], "object_name": "   "},
        {"images": [b64], "object_name": ""},
    ):
        r = httpx.post(f"{url}/v1/anomaly", json=body, timeout=30)
        assert r.status_code == 400, body
        assert r.json()["error"]["type"] == "invalid_input", r.json()
    r = httpx.post(f"{url}/v1/anomaly", json={"images": [b64], "object_name": "bottle"}, timeout=30)
    assert r.status_code == 400 and "images[0]" in r.json()["error"]["message"]
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200


def test_eval_anomaly_cli_runs_winclip_per_category(server, tmp_path):
    """`eval anomaly --winclip` tells WinCLIP each category's folder name."""
    import json
    import os
    import subprocess
    import sys

    from mvtec_synthetic import write_synthetic_mvtec
    from sklearn.metrics import roc_auc_score

    from promptserve.anomaly_eval import mvtec_samples

    data = write_synthetic_mvtec(tmp_path / "mvtec")
    out = subprocess.run(
        [sys.executable, "-m", "promptserve.cli", "eval", "anomaly", "--data", str(data),
         "--winclip", "--url", server["base_url"], "--json", str(tmp_path / "metrics.json")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TQDM_DISABLE": "1"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads((tmp_path / "metrics.json").read_text())
    samples = mvtec_samples(data)["tile"]
    with Client(server["base_url"]) as c:
        res = c.detect_anomalies([s.path for s in samples], object_name="tile").results
    want = roc_auc_score([s.anomalous for s in samples], [r.score for r in res])
    assert got["tile"]["image_auroc"] == pytest.approx(want, abs=1e-6)
