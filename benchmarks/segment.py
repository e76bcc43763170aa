#!/usr/bin/env python
"""Benchmark: open-vocabulary segmentation with sliding windows, bare engine and served.

On this machine, with ViT-B-16 (SEEDED RANDOM WEIGHTS) on ONNX Runtime and SCLIP's graph
(224-pixel windows, stride 112), for square images of 448 and 896 pixels segmented at that size
(9 and 49 windows) with 20 and 150 classes, one run:
- bare engine, the windows of one image in batches of 16 ("batched") vs one window per call
  ("unbatched"): graph time per image;
- the stitching and labelling after the graph (per-window cosines, upsampling, overlap average,
  softmax over classes, label map), per image, for each class count;
- served `POST /v1/segment` end to end (decode, resize, windows, graph, stitching, PNG) at
  concurrency 1 and 2, images/s and p50/p99.
Results go to benchmarks/results/segment-*.

Example:
    python benchmarks/segment.py [--iterations 3]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from serve_classify import (  # noqa: E402 -- shared benchmark helpers
    WEIGHTS_NOTE,
    _drive,
    fused_config,
    latency_stats,
    machine_info,
    save_report,
    served_app,
)

ARCH, METHOD, CROP, STRIDE = "ViT-B-16", "sclip", 224, 112
GRAPH = f"segment_{METHOD}"
SIZES, CLASS_COUNTS = (448, 896), (20, 150)
_EXPORT = """
import sys
from pathlib import Path
from promptserve.models.clip.bundle import SegmentGraphSpec
from promptserve.models.clip.export.onnx import export_bundle
from promptserve.models.clip.export.seeded import seeded_backbone
arch, cache, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
spec = seeded_backbone(arch, seed=0, directory=cache / "backbones")
export_bundle(spec, out, deep_prompts=False, segment=[SegmentGraphSpec(method="sclip")])
"""


def ensure_bundle(cache: Path) -> Path:
    out = cache / f"{ARCH}-seed0-segment-sclip"
    if not (out / "bundle.json").exists():
        print(f"exporting {ARCH} (random weights) with SCLIP's graph to {out} ...", flush=True)
        subprocess.run([sys.executable, "-c", _EXPORT, ARCH, str(cache), str(out)], check=True)
    return out


def scene(size: int, seed: int = 0) -> bytes:
    """A PNG of smooth random colour blobs (a stand-in photo)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((size, size), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def classes(n: int) -> list[str]:
    return [f"object {i}" for i in range(n)]


def _time(fn, iterations: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(iterations):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def bench_engine(bundle_dir: Path, args) -> list[dict[str, Any]]:
    from promptserve.images import normalize
    from promptserve.models.bundle import Bundle
    from promptserve.models.clip.methods.segment import DEFAULTS, cut_windows, segment, window_boxes
    from promptserve.models.clip.runtime import ClipGraphs
    from promptserve.models.clip.text import template_ensemble
    from promptserve.serving.engines.base import EngineOptions

    bundle = Bundle(bundle_dir)
    engine = ClipGraphs.create("onnxruntime", bundle, EngineOptions(threads=args.engine_threads))
    pre = bundle.manifest.config.preprocess
    texts = {
        n: template_ensemble(engine.text_tower, classes(n), ["a photo of a {}."])
        for n in CLASS_COUNTS
    }
    rows = []
    for size in SIZES:
        boxes = window_boxes(size, size, CROP, STRIDE)
        image = np.zeros((size, size, 3), np.uint8) + 100
        windows = normalize(cut_windows(image, boxes, CROP, (0, 0, 0)), mean=pre.mean, std=pre.std)
        iters = args.iterations if size < 800 else max(1, args.iterations - 1)

        def batched(w=windows) -> np.ndarray:
            return np.concatenate(
                [engine.encode_dense(GRAPH, w[i : i + 16])[0] for i in range(0, len(w), 16)]
            )

        def unbatched(w=windows) -> np.ndarray:
            return np.concatenate(
                [engine.encode_dense(GRAPH, w[i : i + 1])[0] for i in range(len(w))]
            )

        for name, fn in (
            ("graph, windows batched by 16", batched),
            ("graph, one window per call", unbatched),
        ):
            t = _time(fn, iters)
            rows.append({"case": name, "size": size, "classes": None, "windows": len(boxes),
                         "images_per_s": len(t) / sum(t), **latency_stats(t)})  # fmt: skip
            print(f"[engine] {size}px {name:<30} {rows[-1]['images_per_s']:.3f} img/s", flush=True)
        feats = batched()
        for n in CLASS_COUNTS:
            t = _time(lambda n=n, f=feats, b=boxes, s=size: segment(
                f, b, texts[n], name_class=np.arange(n), crop=CROP, resized=(s, s), original=(s, s),
                logit_scale=DEFAULTS[METHOD].logit_scale), iters)  # fmt: skip
            rows.append({"case": "stitch + label", "size": size, "classes": n, "windows": len(boxes),
                         "images_per_s": len(t) / sum(t), **latency_stats(t)})  # fmt: skip
            print(
                f"[engine] {size}px stitch + label, {n} classes: p50 {rows[-1]['p50_ms']:.0f} ms",
                flush=True,
            )
    return rows


def bench_served(bundle_dir: Path, args, report: dict) -> list[dict[str, Any]]:
    import httpx

    workdir = Path(tempfile.mkdtemp(prefix="promptserve-segment-"))
    args.concurrency = 16  # windows per graph call (max_batch_size)
    config = fused_config(bundle_dir, workdir, args)
    report["config"]["app_config"] = config.model_dump(mode="json")
    rows: list[dict[str, Any]] = []
    with served_app(config, workdir) as url:

        async def run() -> None:
            async with httpx.AsyncClient(timeout=httpx.Timeout(600)) as http:
                for size in SIZES:
                    image = base64.b64encode(scene(size)).decode("ascii")
                    for n in CLASS_COUNTS:
                        fields = {"labels": classes(n), "templates": ["a photo of a {}."],
                                  "method": METHOD, "short_side": size}  # fmt: skip
                        body = json.dumps({"images": [image], **fields}).encode()
                        for conc in (1, 2):
                            seconds = args.seconds if size < 800 else 2 * args.seconds
                            samples, t0 = await _drive(
                                http, f"{url}/v1/segment", [[body]], conc, 1, seconds
                            )
                            ok = [s for s in samples if s.status == 200]
                            if len(ok) < len(samples):
                                raise RuntimeError(
                                    f"errors: {[s.error for s in samples if s.status != 200][:2]}"
                                )
                            wall = max(s.end for s in samples) - t0
                            rows.append({"case": "served", "size": size, "classes": n, "concurrency": conc,
                                         "images_per_s": len(ok) / wall,
                                         **latency_stats([s.end - s.start for s in ok])})  # fmt: skip
                            p = rows[-1]
                            print(f"[served] {size}px {n:>3} classes concurrency {conc}: "
                                  f"{p['images_per_s']:.3f} img/s p50 {p['p50_ms']:.0f} ms", flush=True)  # fmt: skip

        asyncio.run(run())
    return rows


def markdown(report: dict) -> str:
    mach = report["machine"]
    lines = [
        f"# segment — {report['timestamp']}",
        "",
        f"**{report['weights_note']}**",
        "",
        f"Machine: {mach.get('cpu_model')}, {mach.get('usable_cpus')} usable CPUs; ONNX Runtime "
        f"{mach.get('onnxruntime_version')}, {report['config']['engine_threads']} engine threads. "
        f"{METHOD} graph, {CROP}-pixel windows, stride {STRIDE}; square images segmented at their "
        "size. Served: fused topology, one image per request.",
        "",
        "| case | size | windows | classes | concurrency | img/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['case']} | {r['size']} | {r.get('windows', '')} | {r['classes'] or ''} | "
            f"{r.get('concurrency', '')} | {r['images_per_s']:.3f} | {r['p50_ms']:.0f} | "
            f"{r['p99_ms']:.0f} |"
        )
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in report["ratios"].items()]
    return "\n".join(lines) + "\n"


def ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    def ips(**match: Any) -> float:
        return next(r["images_per_s"] for r in rows if all(r.get(k) == v for k, v in match.items()))

    out = {}
    for size in SIZES:
        out[f"{size}px graph, batched ÷ unbatched"] = ips(
            case="graph, windows batched by 16", size=size
        ) / ips(case="graph, one window per call", size=size)
        for n in CLASS_COUNTS:
            out[f"{size}px {n} classes, served concurrency 2 ÷ 1"] = ips(
                case="served", size=size, classes=n, concurrency=2
            ) / ips(case="served", size=size, classes=n, concurrency=1)
        out[f"{size}px served, 150 ÷ 20 classes"] = ips(
            case="served", size=size, classes=150, concurrency=1
        ) / ips(case="served", size=size, classes=20, concurrency=1)
    return out  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "promptserve" / "bench")
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--engine-threads", type=int, default=2)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)

    started = datetime.now()
    bundle_dir = ensure_bundle(args.cache)
    report: dict[str, Any] = {
        "benchmark": "segment",
        "timestamp": started.isoformat(timespec="seconds"),
        "weights_note": WEIGHTS_NOTE.format(arch=ARCH, seed=0),
        "machine": machine_info(args.engine_threads),
        "config": {"arch": ARCH, "method": METHOD, "crop": CROP, "stride": STRIDE,
                   **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}},
    }  # fmt: skip
    rows = bench_engine(bundle_dir, args)
    rows += bench_served(bundle_dir, args, report)
    report["rows"] = rows
    report["ratios"] = ratios(rows)
    md = markdown(report)
    save_report("segment", report, md, args.out)
    print("\n" + md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
