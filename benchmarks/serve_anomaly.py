#!/usr/bin/env python
"""Benchmark: anomaly detection served over HTTP vs the bare engine, and vs plain classify.

On this machine, with ViT-B-16 (SEEDED RANDOM WEIGHTS) on ONNX Runtime, one Ray Serve app
(fused topology) serving a bundle with AnomalyCLIP's dense graph (224 px, taps 3/6/9/12, DPAM on
the last 9 blocks) and WinCLIP's window graph (2x2 windows), one run, interleaved rounds:
- served `POST /v1/classify` (a templates prompt), `POST /v1/anomaly` with an AnomalyCLIP
  prompt_id and with a WinCLIP object_name, each closed-loop at concurrency 1 (unbatched) and
  at `--concurrency` (batched), images/s, p50/p99 and the mean batch the server formed;
- the bare engine on the same graphs in this process (batch 1 and batch `--concurrency`, map
  arithmetic included), for served ÷ bare.
Every request is one 512x512 JPEG, so maps are resized back to 512x512 and sent as float16.
Results go to benchmarks/results/serve_anomaly-*.

Example:
    python benchmarks/serve_anomaly.py [--seconds 15 --rounds 2 --concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
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
    make_jpeg,
    save_report,
    served_app,
)

ARCH, TAPS, DPAM, SCALES = "ViT-B-16", (3, 6, 9, 12), 10, (2,)
_EXPORT = """
import sys
from pathlib import Path
from promptserve.models.clip.bundle import AnomalyGraphSpec, WinCLIPGraphSpec
from promptserve.models.clip.export.onnx import export_bundle
from promptserve.models.clip.export.seeded import seeded_backbone
arch, cache, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
spec = seeded_backbone(arch, seed=0, directory=cache / "backbones")
export_bundle(spec, out,  # AnomalyCLIP needs the prompted text graph
              anomaly=AnomalyGraphSpec(image_size=224, taps=(3, 6, 9, 12), dpam_layer=10),
              winclip=WinCLIPGraphSpec(scales=(2,)))
"""


def ensure_bundle(cache: Path) -> Path:
    out = cache / f"{ARCH}-seed0-anomaly-winclip2"
    if not (out / "bundle.json").exists():
        print(f"exporting {ARCH} (random weights) with both dense graphs to {out} ...", flush=True)
        subprocess.run([sys.executable, "-c", _EXPORT, ARCH, str(cache), str(out)], check=True)
    return out


def anomalyclip_artifact(backbone_id: str, width: int):
    """Random prompts shaped as the official 9_12_4_multiscale run's (n_ctx 12, depth 9,
    t_n_ctx 4): the cost of a real artifact, meaningless scores."""
    from promptserve.models.artifacts import PromptArtifact
    from promptserve.models.clip.artifacts import ClipArtifactManifest
    from promptserve.models.clip.methods.anomalyclip import AnomalyCLIPParams

    rng = np.random.default_rng(0)

    def rand(*shape: int) -> np.ndarray:
        return (0.02 * rng.standard_normal(shape)).astype(np.float32)

    params = AnomalyCLIPParams(taps=TAPS, dpam_layer=DPAM, image_size=224)
    manifest = ClipArtifactManifest(
        method="anomalyclip",
        task="anomaly",
        backbone=backbone_id,
        classnames=["normal", "anomalous"],
        hparams=params.model_dump(mode="json"),
        source="benchmark",
    )
    tensors = {
        "ctx_pos": rand(12, width),
        "ctx_neg": rand(12, width),
        "compound_prompts_text": rand(8, 4, width),
    }
    return PromptArtifact(manifest, tensors)


def bench_engine(bundle_dir: Path, jpeg: bytes, args) -> list[dict[str, Any]]:
    """The bare engine: decode + resize + graph + map arithmetic + float16 encoding, per call."""
    from promptserve.models.bundle import Bundle
    from promptserve.models.clip.methods.anomalyclip import AnomalyCLIPMethod
    from promptserve.models.clip.methods.winclip import WinCLIPHead
    from promptserve.models.clip.runtime import ClipGraphs
    from promptserve.models.clip.serve.encoder import _anomaly_results
    from promptserve.models.clip.serve.inputs import decode_resized
    from promptserve.serving.config import LimitsConfig
    from promptserve.serving.engines.base import EngineOptions

    bundle = Bundle(bundle_dir)
    m = bundle.manifest
    engine = ClipGraphs.create("onnxruntime", bundle, EngineOptions(threads=args.engine_threads))
    art = anomalyclip_artifact(m.backbone_id, m.config.text_width)
    feats = AnomalyCLIPMethod.class_features(art, engine.text_tower)
    heads = {
        "anomalyclip": (AnomalyCLIPMethod.make_head(art, feats, engine.text_tower), engine.encode_anomaly),
        "winclip": (
            WinCLIPHead.build(engine.text_tower, "bottle", spec=m.config.winclip, image_size=224),
            engine.encode_windows,
        ),
    }  # fmt: skip
    pre, limits = m.config.preprocess, LimitsConfig()
    rows = []
    for r in range(args.rounds):
        for name, (head, encode) in heads.items():
            for batch in (1, args.concurrency):
                blobs = [jpeg] * batch

                def call(blobs=blobs, head=head, encode=encode) -> None:
                    crops, sizes = decode_resized(blobs, 224, limits)
                    pixels = (crops.astype(np.float32) / 255.0 - pre.mean) / pre.std
                    image, dense = encode(pixels.transpose(0, 3, 1, 2).astype(np.float32))
                    _anomaly_results(head, image, dense, tuple(sizes))

                call()
                times, t0 = [], time.perf_counter()
                while time.perf_counter() - t0 < args.seconds or len(times) < 2:
                    t = time.perf_counter()
                    call()
                    times.append(time.perf_counter() - t)
                rows.append({"round": r + 1, "case": f"bare {name}", "batch": batch,
                             "images_per_s": batch * len(times) / sum(times), **latency_stats(times)})  # fmt: skip
                print(f"[engine] round {r + 1} {name:<12} batch {batch:>2} "
                      f"{rows[-1]['images_per_s']:6.2f} img/s  p50 {rows[-1]['p50_ms']:7.1f} ms", flush=True)  # fmt: skip
    return rows


def bench_served(bundle_dir: Path, jpeg: bytes, args, report: dict) -> list[dict[str, Any]]:
    import httpx

    from promptserve import Client
    from promptserve.models.bundle import Bundle
    from promptserve.models.clip.export.importers.templates import build_templates

    m = Bundle(bundle_dir).manifest
    workdir = Path(tempfile.mkdtemp(prefix="promptserve-anomaly-"))
    config = fused_config(bundle_dir, workdir, args)
    report["config"]["app_config"] = config.model_dump(mode="json")
    image = base64.b64encode(jpeg).decode("ascii")
    bodies = {
        "classify": ("/v1/classify", {"prompt_id": "plain", "top_k": 5}),
        "anomalyclip": ("/v1/anomaly", {"prompt_id": "anomalyclip"}),
        "winclip": ("/v1/anomaly", {"object_name": "bottle"}),
    }
    rows: list[dict[str, Any]] = []
    with served_app(config, workdir) as url:
        with Client(url, timeout=300) as client:
            plain = build_templates(
                ["cat", "dog", "car", "tree", "bottle"],
                backbone_id=m.backbone_id,
                templates=["a photo of a {}."],
            )
            client.register_prompt(plain.save(workdir / "plain"), prompt_id="plain")
            art = anomalyclip_artifact(m.backbone_id, m.config.text_width)
            client.register_prompt(art.save(workdir / "anomalyclip"), prompt_id="anomalyclip")

        async def rounds() -> None:
            limits = httpx.Limits(max_connections=args.concurrency + 4)
            async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(300)) as http:
                cases = [(name, c) for name in bodies for c in (1, args.concurrency)]
                for name, _ in cases[::2]:  # warm-up: heads, text caches, graph allocations
                    path, fields = bodies[name]
                    body = json.dumps({"images": [image], **fields}).encode()
                    await _drive(http, url + path, [[body]], args.concurrency, 1, 3.0)
                for r in range(args.rounds):
                    for name, conc in cases if r % 2 == 0 else cases[::-1]:
                        path, fields = bodies[name]
                        body = json.dumps({"images": [image], **fields}).encode()
                        samples, t0 = await _drive(
                            http, url + path, [[body]], conc, 1, args.seconds
                        )
                        ok = [s for s in samples if s.status == 200]
                        wall = max(s.end for s in samples) - t0
                        sizes = [b for s in ok for b in s.batches]
                        rows.append({
                            "round": r + 1, "case": f"served {name}", "batch": conc,
                            "requests": len(samples), "errors": len(samples) - len(ok),
                            "images_per_s": len(ok) / wall,
                            **latency_stats([s.end - s.start for s in ok]),
                            "mean_batch_images": float(np.mean(sizes)) if sizes else None,
                        })  # fmt: skip
                        p = rows[-1]
                        print(
                            f"[served] round {r + 1} {name:<12} concurrency {conc:>2} "
                            f"{p['images_per_s']:6.2f} img/s  p50 {p['p50_ms']:7.1f} ms  "
                            f"p99 {p['p99_ms']:7.1f} ms  batch {p['mean_batch_images'] or 0:4.1f}  "
                            f"errors {p['errors']}",
                            flush=True,
                        )

        asyncio.run(rounds())
    return rows


def summarize(rows: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    def med(case: str, batch: int, key: str = "images_per_s") -> float | None:
        vals = [x[key] for x in rows if x["case"] == case and x["batch"] == batch]
        return float(statistics.median(vals)) if vals else None

    out: dict[str, Any] = {"median": {}, "ratios": {}}
    for case in dict.fromkeys(x["case"] for x in rows):
        for b in (1, concurrency):
            out["median"][f"{case} @{b}"] = {
                k: med(case, b, k) for k in ("images_per_s", "p50_ms", "p99_ms")
            }
    ips = {k: v["images_per_s"] for k, v in out["median"].items()}
    c = concurrency
    for name in ("anomalyclip", "winclip"):
        out["ratios"][f"served ÷ bare, {name}, batched"] = (
            ips[f"served {name} @{c}"] / ips[f"bare {name} @{c}"]
        )
        out["ratios"][f"served ÷ bare, {name}, unbatched"] = (
            ips[f"served {name} @1"] / ips[f"bare {name} @1"]
        )
        out["ratios"][f"served {name}, batched ÷ unbatched"] = (
            ips[f"served {name} @{c}"] / ips[f"served {name} @1"]
        )
    out["ratios"]["served anomalyclip ÷ served classify, batched"] = (
        ips[f"served anomalyclip @{c}"] / ips[f"served classify @{c}"]
    )
    out["ratios"]["served winclip ÷ served anomalyclip, batched"] = (
        ips[f"served winclip @{c}"] / ips[f"served anomalyclip @{c}"]
    )
    return out  # fmt: skip


def markdown(report: dict) -> str:
    s = report["summary"]
    mach = report["machine"]
    lines = [
        f"# serve_anomaly — {report['timestamp']}",
        "",
        f"**{report['weights_note']}**",
        "",
        f"Machine: {mach.get('cpu_model')}, {mach.get('usable_cpus')} usable CPUs; ONNX Runtime "
        f"{mach.get('onnxruntime_version')}, {report['config']['engine_threads']} engine threads; "
        f"fused topology; one 512x512 JPEG per request; AnomalyCLIP at 224 px, taps {TAPS}, DPAM "
        f"on the last {DPAM - 1} blocks; WinCLIP windows {SCALES}. Medians of "
        f"{report['config']['rounds']} interleaved rounds of {report['config']['seconds']} s.",
        "",
        "| case | concurrency / batch | img/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, v in s["median"].items():
        case, b = key.rsplit(" @", 1)
        lines.append(
            f"| {case} | {b} | {v['images_per_s']:.2f} | {v['p50_ms']:.0f} | {v['p99_ms']:.0f} |"
        )
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in s["ratios"].items()]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "promptserve" / "bench")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--engine-threads", type=int, default=2)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)

    started = datetime.now()
    bundle_dir = ensure_bundle(args.cache)
    jpeg = make_jpeg(0, size=512)
    report: dict[str, Any] = {
        "benchmark": "serve_anomaly",
        "timestamp": started.isoformat(timespec="seconds"),
        "weights_note": WEIGHTS_NOTE.format(arch=ARCH, seed=0),
        "machine": machine_info(args.engine_threads),
        "config": {"arch": ARCH, "taps": TAPS, "dpam_layer": DPAM, "winclip_scales": SCALES,
                   **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}},
    }  # fmt: skip
    rows = bench_engine(bundle_dir, jpeg, args) + bench_served(bundle_dir, jpeg, args, report)
    report["rows"] = rows
    report["summary"] = summarize(rows, args.concurrency)
    md = markdown(report)
    save_report("serve_anomaly", report, md, args.out)
    print("\n" + md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
