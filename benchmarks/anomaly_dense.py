#!/usr/bin/env python
"""Benchmark: AnomalyCLIP-style dense inference vs plain classification on one backbone.

On this machine, with ViT-B-16 (SEEDED RANDOM WEIGHTS) on ONNX Runtime, at batch 1 and 8:
- the plain vision graph (classification: one embedding per image);
- AnomalyCLIP's dense graph at the same 224 px (DPAM on the last 9 blocks, taps 3/6/9/12: the
  official 6/12/18/24 of 24 layers, scaled to 12), images/s and p50/p99 per call;
- WinCLIP's window graph (every 2x2, and every 2x2 + 3x3 window re-encoded) to show how the
  window passes scale;
- the map arithmetic after it (softmax per tap, upsampling, Gaussian blur, resize to a 900x900
  original, float16 encoding), per image.
Batched vs unbatched is batch 8 vs batch 1. Results go to benchmarks/results/anomaly_dense-*.

Example:
    python benchmarks/anomaly_dense.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from serve_classify import WEIGHTS_NOTE, latency_stats, machine_info, save_report  # noqa: E402

ARCH, TAPS, DPAM = "ViT-B-16", (3, 6, 9, 12), 10
_EXPORT = """
import sys
from pathlib import Path
from promptserve.models.clip.bundle import AnomalyGraphSpec
from promptserve.models.clip.export.onnx import export_bundle
from promptserve.models.clip.export.seeded import seeded_backbone
arch, cache, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
spec = seeded_backbone(arch, seed=0, directory=cache / "backbones")
export_bundle(spec, out, deep_prompts=False,
              anomaly=AnomalyGraphSpec(image_size=224, taps=(3, 6, 9, 12), dpam_layer=10))
"""


_EXPORT_WINCLIP = """
import sys
from pathlib import Path
import torch
from promptserve.models.clip.dense_graphs import WinCLIPVisionGraph
from promptserve.models.clip.export.onnx import _export
from promptserve.models.clip.export.seeded import seeded_backbone
arch, cache, out, scales = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
model = seeded_backbone(arch, seed=0, directory=cache / "backbones").load().eval()
graph = WinCLIPVisionGraph(model, scales=tuple(int(s) for s in scales.split(","))).eval()
_export(graph, (torch.randn(2, 3, 224, 224),), out, {"batch": (1, 1 << 16)})
"""


def ensure_winclip(cache: Path, scales: str) -> Path:
    out = cache / f"{ARCH}-seed0-winclip-{scales.replace(',', '')}.onnx"
    if not out.exists():
        print(f"exporting the WinCLIP window graph (scales {scales}) to {out} ...", flush=True)
        cmd = [sys.executable, "-c", _EXPORT_WINCLIP, ARCH, str(cache), str(out), scales]
        subprocess.run(cmd, check=True)
    return out


def ensure_bundle(cache: Path) -> Path:
    out = cache / f"{ARCH}-seed0-anomaly"
    if not (out / "bundle.json").exists():
        print(f"exporting {ARCH} (random weights) with the anomaly graph to {out} ...", flush=True)
        subprocess.run([sys.executable, "-c", _EXPORT, ARCH, str(cache), str(out)], check=True)
    return out


def timed(fn, seconds: float, warmup: float) -> list[float]:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < warmup:
        fn()
    times: list[float] = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds or len(times) < 3:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "promptserve" / "bench")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--warmup-seconds", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)

    from promptserve.models.bundle import Bundle
    from promptserve.models.clip.maps import resize_bilinear
    from promptserve.models.clip.methods.anomalyclip import AnomalyCLIPParams, AnomalyHead
    from promptserve.models.clip.runtime import ClipGraphs
    from promptserve.serving.engines.base import EngineOptions
    from promptserve.types import EncodedArray

    started = datetime.now()
    bundle = Bundle(ensure_bundle(args.cache))
    engine = ClipGraphs.create("onnxruntime", bundle, EngineOptions(threads=args.threads))
    rng = np.random.default_rng(0)
    text = rng.standard_normal((2, bundle.manifest.config.embed_dim)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    head = AnomalyHead(
        ("normal", "anomalous"),
        text,
        params=AnomalyCLIPParams(taps=TAPS, dpam_layer=DPAM, image_size=224),
    )
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
    winclip = {
        sc: ort.InferenceSession(
            str(ensure_winclip(args.cache, sc)), so, providers=["CPUExecutionProvider"]
        )
        for sc in ("2", "2,3")
    }
    rows = []
    for r in range(args.rounds):
        for batch in (1, 8):
            pixels = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
            cases = {
                "plain vision graph (classify)": lambda x=pixels: engine.encode_image(x),
                "AnomalyCLIP dense graph": lambda x=pixels: engine.encode_anomaly(x),
                **{
                    f"WinCLIP windows, scales {sc}": (
                        lambda x=pixels, sess=sess: sess.run(None, {"pixel_values": x})
                    )
                    for sc, sess in winclip.items()
                },
            }
            for name, fn in cases.items():
                times = timed(fn, args.seconds, args.warmup_seconds)
                rows.append({"round": r + 1, "case": name, "batch": batch,
                             "images_per_s": batch * len(times) / sum(times), **latency_stats(times)})  # fmt: skip
                print(f"round {r + 1} batch {batch} {name:<32} {rows[-1]['images_per_s']:7.2f} img/s "
                      f"p50 {rows[-1]['p50_ms']:7.1f} ms p99 {rows[-1]['p99_ms']:7.1f} ms", flush=True)  # fmt: skip
    image, patches = engine.encode_anomaly(rng.standard_normal((1, 3, 224, 224)).astype(np.float32))

    def postprocess() -> None:
        _scores, maps = head.outputs(image, patches)
        EncodedArray.from_numpy(resize_bilinear(maps[0], (900, 900)), "float16")

    post = latency_stats(timed(postprocess, args.seconds / 2, 0.5))
    print(
        f"map arithmetic per image (taps, upsample, blur, resize to 900x900, float16): p50 {post['p50_ms']:.1f} ms"
    )

    def median(case: str, batch: int) -> float:
        return float(
            np.median(
                [x["images_per_s"] for x in rows if x["case"] == case and x["batch"] == batch]
            )
        )

    case_names = list(dict.fromkeys(x["case"] for x in rows))
    summary = {f"{case} batch {b}": median(case, b) for case in case_names for b in (1, 8)}
    report = {
        "benchmark": "anomaly_dense",
        "timestamp": started.isoformat(timespec="seconds"),
        "weights_note": WEIGHTS_NOTE.format(arch=ARCH, seed=0),
        "machine": machine_info(args.threads),
        "config": {"arch": ARCH, "taps": TAPS, "dpam_layer": DPAM, "image_size": 224, **{k: str(v) for k, v in vars(args).items()}},
        "rows": rows,
        "median_images_per_s": summary,
        "dense_over_plain": {b: summary[f"AnomalyCLIP dense graph batch {b}"] / summary[f"plain vision graph (classify) batch {b}"] for b in (1, 8)},
        "batched_over_unbatched": {c: summary[f"{c} batch 8"] / summary[f"{c} batch 1"] for c in case_names},
        "postprocess_ms": post,
    }  # fmt: skip
    lines = [
        f"# anomaly_dense — {report['timestamp']}",
        "",
        f"**{report['weights_note']}**",
        "",
        f"Machine: {report['machine'].get('cpu_model')}, {report['machine'].get('usable_cpus')} usable CPUs; "
        f"ONNX Runtime {report['machine'].get('onnxruntime_version')}, {args.threads} threads; 224 px, "
        f"taps {TAPS}, DPAM on the last {DPAM - 1} blocks. Medians of {args.rounds} rounds.",
        "",
        "| graph | batch 1 img/s | batch 8 img/s | batched ÷ unbatched |",
        "|---|---:|---:|---:|",
    ]
    for c in case_names:
        lines.append(f"| {c} | {summary[f'{c} batch 1']:.1f} | {summary[f'{c} batch 8']:.1f} | "
                     f"{report['batched_over_unbatched'][c]:.2f} |")  # fmt: skip
    lines += [
        "",
        f"Dense ÷ plain: batch 1 **{report['dense_over_plain'][1]:.2f}**, batch 8 "
        f"**{report['dense_over_plain'][8]:.2f}**. Map arithmetic per image (to a 900x900 original): "
        f"p50 {post['p50_ms']:.1f} ms, p99 {post['p99_ms']:.1f} ms. WinCLIP re-encodes every "
        "window (14x14 grid: 169 windows at scale 2, 144 at scale 3) as its own short sequence.",
        "",
    ]
    md = "\n".join(lines)
    save_report("anomaly_dense", report, md, args.out)
    print("\n" + md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
