#!/usr/bin/env python
"""Benchmark: the vision graph on every runtime this machine has, batch 1 to 256, in one run.

The per-request work of classify is the vision graph, so this is where runtimes differ. Each
runtime takes host float32 pixels and returns host embeddings, as the engines serve them
(transfers included):
- torch fp32, and on CUDA fp16 and bf16 (the weights cast), and with `--compile` fp16 through
  `torch.compile(mode="reduce-overhead")` (CUDA graphs);
- ONNX Runtime on CPU and CUDA, from the bundle's exported graph;
- ONNX Runtime's TensorRT provider, fp16 and fp32, with the batch profile and engine cache that
  `promptserve export --format triton --tensorrt` gives Triton (exporters/tensorrt.py).
A runtime that cannot run here is listed with the reason. Every output is compared with torch
fp32 on the same batch (min cosine), so a fast but wrong runtime shows.

ViT-B-16 by default with SEEDED RANDOM WEIGHTS (compute equals real weights). Results go to
benchmarks/results/vision_engines-*.

Example (GPU machine):
    python benchmarks/vision_engines.py --batches 1,8,32,64,128,256 --compile
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from serve_classify import WEIGHTS_NOTE, ensure_bundle, machine_info, save_report  # noqa: E402

Runner = Callable[[np.ndarray], np.ndarray]


def torch_runners(bundle, device: str, compile_: bool) -> tuple[dict[str, Runner], dict[str, str]]:
    import torch

    from promptserve.models.clip.graphs import VisionGraph

    model = bundle.manifest.config.backbone.load()
    runners, skipped = {}, {}
    dtypes = {"fp32": torch.float32}
    if device == "cuda":
        dtypes |= {"fp16": torch.float16, "bf16": torch.bfloat16}
    else:
        skipped |= {"torch fp16/bf16": "no CUDA device (CPU half precision is not a serving path)"}
    for label, dtype in dtypes.items():
        graph = VisionGraph(model).eval().to(device=device, dtype=dtype)

        def run(pixels: np.ndarray, graph=graph, dtype=dtype) -> np.ndarray:
            with torch.inference_mode():
                x = torch.from_numpy(pixels).to(device, dtype=dtype, non_blocking=True)
                return graph(x).float().cpu().numpy()

        runners[f"torch {label}"] = run
    if compile_ and device == "cuda":
        graph = VisionGraph(model).eval().to(device=device, dtype=torch.float16)
        compiled = torch.compile(graph, mode="reduce-overhead", dynamic=False)

        def run_compiled(pixels: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                x = torch.from_numpy(pixels).to(device, dtype=torch.float16)
                return compiled(x).float().cpu().numpy()

        runners["torch fp16 compiled (CUDA graphs)"] = run_compiled
    elif compile_:
        skipped["torch compiled"] = "CUDA graphs need a CUDA device"
    return runners, skipped


def ort_runners(bundle, max_batch: int) -> tuple[dict[str, Runner], dict[str, str]]:
    import onnxruntime as ort

    from promptserve.exporters.tensorrt import (
        TRT_PROVIDER,
        TensorRTOptions,
        provider_options,
    )

    path = str(bundle.graph_path("vision"))
    available = ort.get_available_providers()
    runners, skipped = {}, {}

    def session_runner(providers: list) -> Runner:
        session = ort.InferenceSession(path, providers=providers)
        return lambda pixels: session.run(None, {"pixel_values": pixels})[0]

    for label, provider in (("CPU", "CPUExecutionProvider"), ("CUDA", "CUDAExecutionProvider")):
        if provider in available:
            runners[f"onnxruntime {label}"] = session_runner([provider])
        else:
            skipped[f"onnxruntime {label}"] = f"this onnxruntime has no {provider}"
    if TRT_PROVIDER not in available:
        skipped["onnxruntime TensorRT fp16/fp32"] = f"this onnxruntime has no {TRT_PROVIDER}"
        return runners, skipped
    probe = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    shapes = {i.name: tuple(i.shape) for i in probe.get_inputs()}
    for precision in ("fp16", "fp32"):
        options = TensorRTOptions(
            precision=precision, max_batch=max_batch, opt_batch=min(64, max_batch),
            cache_path=str(Path.home() / ".cache" / "promptserve" / f"trt-{precision}"),
        )  # fmt: skip
        trt = (TRT_PROVIDER, provider_options(shapes, options, Path(path)))
        runners[f"onnxruntime TensorRT {precision}"] = session_runner(
            [trt, "CUDAExecutionProvider"]
        )
    return runners, skipped


def measure(run: Runner, pixels: np.ndarray, seconds: float) -> dict[str, float]:
    run(pixels)  # warm-up: allocations, kernel selection, engine builds, graph capture
    run(pixels)
    times = []
    start = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        run(pixels)  # returns host arrays, so the device work is finished
        times.append(time.perf_counter() - t0)
    return {
        "images_per_s": len(pixels) * len(times) / sum(times),
        "p50_ms": 1000 * statistics.median(times),
        "calls": len(times),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="ViT-B-16")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "promptserve" / "bench")
    p.add_argument("--batches", default="1,8,32,64,128,256")
    p.add_argument("--seconds", type=float, default=5.0, help="per runtime and batch size")
    p.add_argument("--compile", action="store_true", help="add torch.compile fp16 (CUDA graphs)")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    import torch

    from promptserve.models.bundle import Bundle, output_agreement

    started = datetime.now()
    batches = [int(b) for b in args.batches.split(",")]
    bundle = Bundle(ensure_bundle(args.arch, 0, args.cache))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    runners, skipped = torch_runners(bundle, device, args.compile)
    more, more_skipped = ort_runners(bundle, max(batches))
    runners |= more
    skipped |= more_skipped
    size = bundle.manifest.config.preprocess.size
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    for batch in batches:
        pixels = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
        reference = runners["torch fp32"](pixels)
        for name, run in runners.items():
            try:
                stats = measure(run, pixels, args.seconds)
                stats["min_cosine_vs_torch_fp32"] = output_agreement([run(pixels)], [reference])[1]
            except Exception as exc:  # noqa: BLE001 -- e.g. out of memory at a large batch
                skipped[f"{name} @ batch {batch}"] = f"{type(exc).__name__}: {exc}"[:300]
                continue
            rows.append({"runtime": name, "batch": batch, **stats})
            print(f"{name:<36} batch {batch:>4}: {stats['images_per_s']:9.1f} img/s "
                  f"p50 {stats['p50_ms']:8.1f} ms cosine {stats['min_cosine_vs_torch_fp32']:.5f}",
                  flush=True)  # fmt: skip

    machine = machine_info(torch.get_num_threads())
    if device == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(0)
    baseline = "torch fp16" if device == "cuda" else "torch fp32"
    report = {
        "benchmark": "vision_engines",
        "timestamp": started.isoformat(timespec="seconds"),
        "weights_note": WEIGHTS_NOTE.format(arch=args.arch, seed=0),
        "machine": machine,
        "config": {"arch": args.arch, "batches": batches, "seconds": args.seconds,
                   "device": device, "baseline": baseline},
        "rows": rows,
        "skipped": skipped,
    }  # fmt: skip
    names = list(dict.fromkeys(r["runtime"] for r in rows))
    cell = {(r["runtime"], r["batch"]): r for r in rows}
    lines = [
        f"# vision_engines — {report['timestamp']}", "", f"**{report['weights_note']}**", "",
        f"Machine: {machine.get('gpu') or machine.get('cpu_model')}; {args.arch} vision graph, "
        f"{size}px, host arrays in and out. Images/s (× {baseline}), min cosine vs torch fp32.",
        "", "| runtime | " + " | ".join(f"batch {b}" for b in batches) + " |",
        "|---|" + "---:|" * len(batches),
    ]  # fmt: skip
    for name in names:
        cells = []
        for b in batches:
            r, base = cell.get((name, b)), cell.get((baseline, b))
            if r is None:
                cells.append("—")
                continue
            ratio = f" (×{r['images_per_s'] / base['images_per_s']:.2f})" if base else ""
            cells.append(f"{r['images_per_s']:.1f}{ratio}, {r['min_cosine_vs_torch_fp32']:.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if skipped:
        lines += ["", "Not run here:", *(f"- {k}: {v}" for k, v in skipped.items())]
    md = "\n".join(lines) + "\n"
    save_report("vision_engines", report, md, args.out)
    print("\n" + md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
