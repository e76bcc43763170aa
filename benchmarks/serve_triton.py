#!/usr/bin/env python
"""Benchmark: served classify with the `triton` engine vs the `onnxruntime` engine, same bundle.

ViT-B-32 (SEEDED RANDOM WEIGHTS). Four apps on one Ray Serve instance, all fused topology:
`/ort` runs the graphs in the replica with ONNX Runtime; `/triton` sends them to a Triton server
on loopback over gRPC, `/triton_shm` the same with tensors in system shared memory, and
`/triton_2x` with two batches in flight per graph (`encoder.max_inflight_batches: 2`). The
server is the `tritonserver` nvidia-pytriton bundles, which has only the Python backend, so
each model is a Python-backend model running the same ONNX graph with ONNX Runtime: Triton's
own batcher and transport, plus a Python hop a native ONNX Runtime backend would not have.
Closed loop at concurrency 1, 8 and 32, one 224x224 JPEG per request, rounds interleaved.
Needs PROMPTSERVE_TRITON_HOME / _LIBS / _PYTHONPATH as `.ci/run` sets them.
Results go to benchmarks/results/serve_triton-*.

Example:
    python benchmarks/serve_triton.py [--seconds 15 --rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from serve_classify import (  # noqa: E402 -- shared benchmark helpers
    WEIGHTS_NOTE,
    _drive,
    ensure_bundle,
    fused_config,
    latency_stats,
    machine_info,
    make_jpeg,
    save_report,
    served_app,
)
from triton_server import start_triton, triton_home  # noqa: E402

ARCH = "ViT-B-32"
CONCURRENCIES = (1, 8, 32)
APPS = ("ort", "triton", "triton_shm", "triton_2x")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "promptserve" / "bench")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--engine-threads", type=int, default=2)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    if triton_home() is None:
        raise SystemExit("no tritonserver: set PROMPTSERVE_TRITON_HOME (see .ci/run)")

    import httpx
    from ray import serve

    from promptserve.exporters.triton import TritonOptions, write_model_repository
    from promptserve.models.bundle import Bundle
    from promptserve.serving.app import build_app

    started = datetime.now()
    bundle_dir = ensure_bundle(ARCH, 0, args.cache)
    workdir = Path(tempfile.mkdtemp(prefix="promptserve-triton-"))
    repo = workdir / "repo"
    options = TritonOptions(backend="python", instance_kind="KIND_CPU", max_batch_size=32,
                            preferred_batch_sizes=(8, 16, 32), max_queue_delay_us=5000)  # fmt: skip
    write_model_repository(Bundle(bundle_dir), repo, options)
    triton = start_triton(repo, workdir)
    args.concurrency = 32  # max_batch_size of both apps
    rows: list[dict[str, Any]] = []
    try:
        ort_cfg = fused_config(bundle_dir, workdir, args, name="ort", route_prefix="/ort")
        with served_app(ort_cfg, workdir, num_cpus=8) as url:  # four apps of 1.5 logical CPUs
            base = url.rsplit("/ort", 1)[0]
            for app, shm, inflight in (("triton", "none", 1), ("triton_shm", "system", 1),
                                       ("triton_2x", "none", 2)):  # fmt: skip
                triton_cfg = fused_config(
                    bundle_dir, workdir, args, name=app, route_prefix=f"/{app}",
                    engine={"name": "triton",
                            "triton": {"url": triton.grpc_url, "shared_memory": shm}},
                    encoder={"max_inflight_batches": inflight},
                )  # fmt: skip
                serve.run(build_app(triton_cfg), name=app, route_prefix=f"/{app}")
            image = base64.b64encode(make_jpeg(0)).decode("ascii")
            body = json.dumps({"images": [image], "labels": ["cat", "dog", "car"]}).encode()

            async def rounds() -> None:
                async with httpx.AsyncClient(timeout=httpx.Timeout(300)) as http:
                    for app in APPS:  # warm-up
                        await _drive(http, f"{base}/{app}/v1/classify", [[body]], 8, 1, 3.0)
                    for r in range(args.rounds):
                        apps = APPS if r % 2 == 0 else APPS[::-1]
                        for conc in CONCURRENCIES:
                            for app in apps:
                                url_ = f"{base}/{app}/v1/classify"
                                samples, t0 = await _drive(
                                    http, url_, [[body]], conc, 1, args.seconds
                                )
                                ok = [s for s in samples if s.status == 200]
                                wall = max(s.end for s in samples) - t0
                                rows.append({"round": r + 1, "engine": app, "concurrency": conc,
                                             "errors": len(samples) - len(ok),
                                             "images_per_s": len(ok) / wall,
                                             **latency_stats([s.end - s.start for s in ok])})  # fmt: skip
                                x = rows[-1]
                                print(f"round {r + 1} {app:<10} c={conc:<2} {x['images_per_s']:6.2f} img/s "
                                      f"p50 {x['p50_ms']:6.0f} ms p99 {x['p99_ms']:6.0f} ms errors {x['errors']}",
                                      flush=True)  # fmt: skip

            asyncio.run(rounds())
    finally:
        triton.stop()

    def med(engine: str, conc: int, key: str = "images_per_s") -> float:
        return statistics.median(
            x[key] for x in rows if x["engine"] == engine and x["concurrency"] == conc
        )

    report = {
        "benchmark": "serve_triton",
        "timestamp": started.isoformat(timespec="seconds"),
        "weights_note": WEIGHTS_NOTE.format(arch=ARCH, seed=0),
        "machine": machine_info(args.engine_threads),
        "config": {"arch": ARCH, "triton_backend": "python (ONNX Runtime inside)",
                   **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}},
        "rows": rows,
        "triton_over_ort": {c: med("triton", c) / med("ort", c) for c in CONCURRENCIES},
        "shm_over_socket": {c: med("triton_shm", c) / med("triton", c) for c in CONCURRENCIES},
        "two_inflight_over_one": {
            c: med("triton_2x", c) / med("triton", c) for c in CONCURRENCIES
        },
    }  # fmt: skip
    mach = report["machine"]
    lines = [
        f"# serve_triton — {report['timestamp']}", "", f"**{report['weights_note']}**", "",
        f"Machine: {mach.get('cpu_model')}, {mach.get('usable_cpus')} usable CPUs. Triton: the "
        "nvidia-pytriton tritonserver, Python-backend models running ONNX Runtime, dynamic "
        "batching (max 32, queue delay 5 ms), gRPC through tritonclient's asyncio client. Medians "
        f"of {args.rounds} interleaved rounds of {args.seconds} s.", "",
        "| concurrency | onnxruntime img/s (p50 / p99 ms) | triton img/s (p50 / p99 ms) | "
        "triton + shared memory | triton, 2 batches in flight | triton ÷ onnxruntime | "
        "shm ÷ socket | 2 in flight ÷ 1 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip

    def cell(app: str, c: int) -> str:
        return f"{med(app, c):.2f} ({med(app, c, 'p50_ms'):.0f} / {med(app, c, 'p99_ms'):.0f})"

    for c in CONCURRENCIES:
        lines.append(
            f"| {c} | {cell('ort', c)} | {cell('triton', c)} | {cell('triton_shm', c)} | "
            f"{cell('triton_2x', c)} | {report['triton_over_ort'][c]:.2f} | "
            f"{report['shm_over_socket'][c]:.2f} | {report['two_inflight_over_one'][c]:.2f} |"
        )
    md = "\n".join(lines) + "\n"
    save_report("serve_triton", report, md, args.out)
    print("\n" + md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
