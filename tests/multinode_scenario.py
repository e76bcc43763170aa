"""A two-node Ray cluster on this machine (Ray's own `cluster_utils.Cluster`: a head and a
worker node, each its own raylet, as `ray start --head` / `ray start --address` make them),
encoder replicas pinned to the worker node by a custom resource, SDK traffic throughout, the
worker node killed and a replacement added. Run by tests/e2e/test_multinode.py in a subprocess
(one Ray per process); prints a JSON report on its last line.

Usage: python multinode_scenario.py BUNDLE_DIR WORKDIR
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(message: str) -> None:
    print(f"[multinode {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(bundle: str, workdir: str) -> dict:
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conftest import make_image

    from promptserve import Client
    from promptserve.serving.app import build_app
    from promptserve.serving.config import AppConfig

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": False,
            "resources": {"head": 1},
            "gcs_server_port": _free_port(),  # never the default 6379 another cluster may hold
        },
    )
    report: dict = {}
    try:
        log("head up")
        worker = cluster.add_node(num_cpus=2, resources={"encoder_node": 1})
        log("worker node up")
        ray.init(address=cluster.address)
        port = _free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        config = AppConfig.model_validate({
            "bundle": bundle,
            "prompts": {"store": f"{workdir}/store"},
            "gateway": {"num_cpus": 0.5},
            "encoder": {"num_cpus": 0.5, "num_replicas": 2, "resources": {"encoder_node": 0.5},
                        "batch_wait_timeout_s": 0.01},
            "auth": {"api_keys": [], "api_keys_env": None},
        })  # fmt: skip
        serve.run(build_app(config), name="multinode", route_prefix="/", blocking=False)
        url = f"http://127.0.0.1:{port}"
        log("app running")

        def encoder_nodes() -> list[str]:
            """Nodes of the live encoder replicas (from the GCS actor table; no dashboard)."""
            table = ray._private.state.actors(actor_state_name="ALIVE")
            return sorted(
                a["Address"]["NodeID"]
                for a in table.values()
                if "multinode" in a["Name"] and "encoder" in a["Name"]
            )

        report["worker_node"] = worker.node_id
        report["encoder_nodes_before"] = encoder_nodes()
        images = [make_image(51), make_image(52)]
        with Client(url, timeout=60) as c:
            want = [
                r.top[0].label for r in c.classify(images, labels=["cat", "dog", "car"]).results
            ]

        outcomes: list[tuple[str, float]] = []
        stop = threading.Event()

        def traffic() -> None:
            with Client(url, timeout=60, max_retries=8) as c:
                while not stop.is_set():
                    try:
                        out = c.classify(images, labels=["cat", "dog", "car"], concurrency=1)
                        got = [r.top[0].label for r in out.results]
                        outcomes.append(("ok" if got == want else "WRONG", time.time()))
                    except Exception as exc:  # noqa: BLE001 -- the SDK reported a failure
                        outcomes.append((f"error: {type(exc).__name__}: {exc}"[:200], time.time()))

        threads = [threading.Thread(target=traffic, daemon=True) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(5)
        killed_at = time.time()
        log(f"killing the worker node; {len(outcomes)} requests so far")
        cluster.remove_node(worker, allow_graceful=False)
        replacement = cluster.add_node(num_cpus=2, resources={"encoder_node": 1})
        report["replacement_node"] = replacement.node_id
        log("replacement node up")
        deadline = time.time() + 180
        while time.time() < deadline:
            recovered = [t for s, t in outcomes if s == "ok" and t > killed_at]
            if len(recovered) >= 5 and encoder_nodes() == [replacement.node_id] * 2:
                break
            time.sleep(1)
        log(f"recovered or timed out; encoders on {encoder_nodes()}")
        stop.set()
        for t in threads:
            t.join(timeout=90)
        report["encoder_nodes_after"] = encoder_nodes()
        report["ok_before_kill"] = sum(1 for s, t in outcomes if s == "ok" and t <= killed_at)
        report["ok_after_kill"] = sum(1 for s, t in outcomes if s == "ok" and t > killed_at)
        report["wrong"] = sum(1 for s, _ in outcomes if s == "WRONG")
        report["errors"] = [s for s, _ in outcomes if s.startswith("error")]
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            cluster.shutdown()
    return report


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
