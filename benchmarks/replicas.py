#!/usr/bin/env python
"""Benchmark: throughput with 1 vs 2 encoder replicas on a local two-worker-node Ray cluster.

Ray's `cluster_utils.Cluster` starts a head node (the gateway and the Serve proxy) and two worker
nodes advertising `encoder_node`; each encoder replica asks for one, so replicas land on separate
nodes as they would on separate GPU pods. ViT-B-32 (SEEDED RANDOM WEIGHTS) on ONNX Runtime, one
engine thread per replica, one 224x224 JPEG per request, closed loop at `--concurrency`; rounds
alternate 1 and 2 replicas (the deployment is updated in place, as the autoscaler would).
All nodes share this machine's cores: the ratio says what the software adds or loses when
replicas are added, not what more hardware buys. Results go to benchmarks/results/replicas-*.

Example:
    python benchmarks/replicas.py [--seconds 20 --rounds 2 --concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from serve_classify import (  # noqa: E402 -- shared benchmark helpers
    WEIGHTS_NOTE,
    _drive,
    _free_port,
    ensure_bundle,
    latency_stats,
    machine_info,
    make_jpeg,
    save_report,
)

ARCH = "ViT-B-32"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "promptserve" / "bench")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import httpx
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from promptserve.serving.app import build_app
    from promptserve.serving.config import AppConfig

    started = datetime.now()
    bundle = ensure_bundle(ARCH, 0, args.cache)
    workdir = Path(tempfile.mkdtemp(prefix="promptserve-replicas-"))
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False, "gcs_server_port": _free_port()},
    )
    rows: list[dict[str, Any]] = []
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1, resources={"encoder_node": 1})
        ray.init(address=cluster.address)
        port = _free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})

        def config(replicas: int) -> AppConfig:
            return AppConfig.model_validate({
                "bundle": str(bundle), "log_level": "WARNING",
                "prompts": {"store": str(workdir / "store")},
                "engine": {"threads": 1},
                "gateway": {"num_cpus": 0.5},
                "encoder": {"num_replicas": replicas, "num_cpus": 0.5,
                            "resources": {"encoder_node": 1}, "max_batch_size": args.concurrency,
                            "batch_wait_timeout_s": 0.005},
                "auth": {"api_keys": [], "api_keys_env": None},
            })  # fmt: skip

        image = base64.b64encode(make_jpeg(0)).decode("ascii")
        body = json.dumps({"images": [image], "labels": ["cat", "dog", "car"]}).encode()
        url = f"http://127.0.0.1:{port}/v1/classify"

        async def point(replicas: int, r: int) -> None:
            serve.run(build_app(config(replicas)), name="replicas", route_prefix="/")
            async with httpx.AsyncClient(timeout=httpx.Timeout(120)) as http:
                await _drive(http, url, [[body]], args.concurrency, 1, 3.0)  # warm-up
                samples, t0 = await _drive(http, url, [[body]], args.concurrency, 1, args.seconds)
            ok = [s for s in samples if s.status == 200]
            wall = max(s.end for s in samples) - t0
            rows.append({"round": r + 1, "replicas": replicas, "errors": len(samples) - len(ok),
                         "images_per_s": len(ok) / wall,
                         **latency_stats([s.end - s.start for s in ok])})  # fmt: skip
            print(f"round {r + 1} replicas {replicas}: {rows[-1]['images_per_s']:.2f} img/s "
                  f"p50 {rows[-1]['p50_ms']:.0f} ms errors {rows[-1]['errors']}", flush=True)  # fmt: skip

        for r in range(args.rounds):
            for replicas in (1, 2) if r % 2 == 0 else (2, 1):
                asyncio.run(point(replicas, r))
                time.sleep(2)
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            cluster.shutdown()

    def med(n: int) -> float:
        return statistics.median(x["images_per_s"] for x in rows if x["replicas"] == n)

    report = {
        "benchmark": "replicas",
        "timestamp": started.isoformat(timespec="seconds"),
        "weights_note": WEIGHTS_NOTE.format(arch=ARCH, seed=0),
        "machine": machine_info(1),
        "config": {"arch": ARCH, **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}},
        "rows": rows,
        "median_images_per_s": {"1 replica": med(1), "2 replicas": med(2)},
        "two_over_one": med(2) / med(1),
    }  # fmt: skip
    mach = report["machine"]
    md = "\n".join([
        f"# replicas — {report['timestamp']}", "", f"**{report['weights_note']}**", "",
        f"Machine: {mach.get('cpu_model')}, {mach.get('usable_cpus')} usable CPUs shared by a head "
        "and two worker nodes (Ray cluster_utils); one encoder replica per worker node, 1 engine "
        f"thread each; concurrency {args.concurrency}; {args.rounds} rounds of {args.seconds} s.",
        "", "| replicas | img/s (median) |", "|---:|---:|",
        f"| 1 | {med(1):.2f} |", f"| 2 | {med(2):.2f} |", "",
        f"2 replicas ÷ 1: **{report['two_over_one']:.2f}**", "",
    ])  # fmt: skip
    save_report("replicas", report, md, args.out)
    print("\n" + md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
