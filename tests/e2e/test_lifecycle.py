"""Replica lifecycle seen from outside: readiness waits for preloading (and says why not),
and every runtime serves every route its bundle supports."""

from __future__ import annotations

import time

import httpx
import numpy as np
from conftest import make_image, serve_config

from promptserve import Client


def _poll(url: str, until, timeout_s: float) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            resp = httpx.get(url, timeout=10)
            if until(resp) or time.monotonic() > deadline:
                return resp
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def test_not_ready_until_preload_succeeds(ray_cluster, tiny_bundle, tiny_spec, tmp_path):
    """A preload location that cannot be read (not there yet) keeps /readyz at 503 and says
    why; the gateway retries, and once the artifacts are there it registers them and is ready.
    (It answered 200 after a failed preload.)"""
    from ray import serve

    from promptserve.models.clip.export.importers.templates import build_templates
    from promptserve.serving.app import build_app

    artifacts = tmp_path / "artifacts"
    cfg = serve_config(
        tiny_bundle.dir, tmp_path / "store", topology="fused",
        prompts={"preload": [str(artifacts)]}, encoder={"num_cpus": 0.25}, gateway={"num_cpus": 0.0},
    )  # fmt: skip
    serve.run(build_app(cfg), name="preload", route_prefix="/preload", blocking=False)
    url = f"{ray_cluster['base_url']}/preload"
    try:
        failed = _poll(
            f"{url}/readyz", lambda r: "preloading prompts failed" in r.text, timeout_s=120
        )
        assert failed.status_code == 503 and "preloading prompts failed" in failed.json()["status"]
        assert failed.headers["retry-after"] == "1"
        build_templates(["cat", "dog"], backbone_id=tiny_spec.id).save(artifacts / "pets")
        ready = _poll(f"{url}/readyz", lambda r: r.status_code == 200, timeout_s=90)
        assert ready.status_code == 200, ready.text
        with Client(url) as c:
            assert c.get_prompt("pets").classnames == ["cat", "dog"]
    finally:
        serve.delete("preload")


def test_torch_runtime_serves_segmentation(ray_cluster, server, tiny_bundle, tmp_path):
    """`engine: torch` runs the segmentation graphs too (its graph mapping lacked them: 500),
    labelling as the onnxruntime app does."""
    from ray import serve

    from promptserve.serving.app import build_app

    cfg = serve_config(
        tiny_bundle.dir, tmp_path / "store", topology="fused", engine={"name": "torch"},
        encoder={"num_cpus": 0.25}, gateway={"num_cpus": 0.0},
    )  # fmt: skip
    serve.run(build_app(cfg), name="torch-app", route_prefix="/torch", blocking=False)
    image = make_image(71, (180, 240))
    labels = ["cat", "dog", "sky"]
    try:
        with Client(f"{ray_cluster['base_url']}/torch") as c, Client(server["base_url"]) as ref:
            got = c.segment(image, labels=labels, method="sclip").results[0].label_map.to_numpy()
            want = ref.segment(image, labels=labels, method="sclip").results[0].label_map.to_numpy()
        assert got.shape == want.shape == (240, 180)  # (height, width) of the 180x240 image
        assert np.mean(got == want) > 0.99  # float differences may flip a near-tie pixel
    finally:
        serve.delete("torch-app")
