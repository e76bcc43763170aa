"""Replica autoscaling from the app config (`encoder.autoscaling`, the same block the KubeRay
render writes into serveConfigV2): a bounded load scales the deployment from 1 to 2 replicas,
and it scales back to 1 when the load stops. Short delays keep the test brief."""

from __future__ import annotations

import threading
import time

from conftest import make_image, serve_config

from promptserve import Client


def _running(app: str) -> int:
    from ray import serve

    status = serve.status().applications.get(app)
    if status is None:
        return 0
    states = status.deployments["gateway"].replica_states
    return int(states.get("RUNNING", 0))


def _wait_for(app: str, replicas: int, timeout_s: float) -> list[int]:
    seen, deadline = [], time.time() + timeout_s
    while time.time() < deadline:
        seen.append(_running(app))
        if seen[-1] == replicas:
            return seen
        time.sleep(0.5)
    raise AssertionError(f"{app} never reached {replicas} replicas: {seen[-20:]}")


def test_scale_up_under_load_and_down_after(ray_cluster, tiny_bundle, tmp_path):
    from ray import serve

    from promptserve.serving.app import build_app

    auto = {
        "min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1,
        "upscale_delay_s": 1, "downscale_delay_s": 4, "metrics_interval_s": 0.5,
        "look_back_period_s": 2,
    }  # fmt: skip
    cfg = serve_config(
        tiny_bundle.dir,
        tmp_path / "store",
        name="autoscaled",
        route_prefix="/autoscaled",
        topology="fused",
        encoder={"num_cpus": 0.25, "autoscaling": auto, "batch_wait_timeout_s": 0.0},
        gateway={"num_cpus": 0.0},
    )
    serve.run(build_app(cfg), name="autoscaled", route_prefix="/autoscaled", blocking=False)
    url = f"{ray_cluster['base_url']}/autoscaled"
    stop = threading.Event()
    errors: list[BaseException] = []

    def load() -> None:
        with Client(url, timeout=60, max_retries=5) as c:
            while not stop.is_set():
                try:
                    c.classify([make_image(41)] * 4, labels=["cat", "dog"], concurrency=1)
                except BaseException as exc:  # noqa: BLE001 -- reported below
                    errors.append(exc)
                    return

    try:
        _wait_for("autoscaled", 1, 120)
        workers = [threading.Thread(target=load, daemon=True) for _ in range(6)]
        for w in workers:
            w.start()
        _wait_for("autoscaled", 2, 90)  # 6 requests in flight, target 1 per replica, max 2
        stop.set()
        for w in workers:
            w.join(timeout=60)
        assert not errors, errors[:3]
        _wait_for("autoscaled", 1, 90)  # idle: back to min_replicas after the downscale delay
    finally:
        stop.set()
        serve.delete("autoscaled")
