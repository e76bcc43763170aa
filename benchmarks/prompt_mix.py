#!/usr/bin/env python
"""Benchmark: many prompt artifacts mixed in one stream vs one artifact, served.

One run measures, on this machine, with ViT-B-32 (SEEDED RANDOM WEIGHTS) on ONNX Runtime:

1. bare engine, batch 32: the plain vision graph vs the prompted graph with plain rows,
   with rows of one MaPLe artifact, and with rows of 32 different MaPLe artifacts; this is what
   a plain-CLIP image pays inside a deep-prompt batch (why the encoder routes plain-only
   batches to the plain graph);
2. served over real HTTP (Ray Serve, fused topology, closed loop at --concurrency), in
   --rounds interleaved rounds:
   - CoOp: a stream cycling uniformly over --coop-prompts registered prompt_ids vs the same
     load on one prompt_id; the encoder keeps every head (`prompts.max_loaded` above the
     count), and the artifact-load counter is read from Ray's metrics before and after the
     timed rounds: no reloads after warm-up;
   - MaPLe: --maple-prompts artifacts mixed vs one;
   - plain CLIP (a templates prompt) for reference.
   Ratios are the median over rounds of mixed ÷ single images/s.

Artifacts are built in numpy with random learned tensors of the official shapes (CoOp: 4
context tokens; MaPLe: 2 tokens, depth 9, the 768x512 projections); class names come from a
fixed word list, 10 per prompt.

Results: benchmarks/results/prompt_mix-<YYYYmmdd-HHMM>.{json,md} and prompt_mix-latest.*.

Example:
    python benchmarks/prompt_mix.py --quick        # smoke run (100 CoOp prompts, short points)
    python benchmarks/prompt_mix.py                # the issue's setting: 1000 CoOp, 50 MaPLe
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from serve_classify import (  # noqa: E402 -- shared benchmark helpers
    WEIGHTS_NOTE,
    _drive,
    _free_port,
    ensure_bundle,
    fused_config,
    latency_stats,
    machine_info,
    make_jpeg,
    save_report,
    served_app,
)

WORDS = [
    "apple",
    "bear",
    "bicycle",
    "bottle",
    "bowl",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "castle",
    "chair",
    "cloud",
    "cup",
    "dolphin",
    "elephant",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lion",
    "lobster",
    "maple",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak",
    "orange",
    "orchid",
    "otter",
    "palm",
    "pear",
    "pickup",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow",
    "wolf",
    "woman",
    "worm",
]


def _classes(k: int, n: int = 10) -> list[str]:
    rng = np.random.default_rng(k)
    return [WORDS[i] for i in rng.choice(len(WORDS), size=n, replace=False)]


def coop_artifact(k: int, backbone_id: str, width: int):
    from promptserve.models.artifacts import PromptArtifact
    from promptserve.models.clip.artifacts import ClipArtifactManifest

    rng = np.random.default_rng(1000 + k)
    manifest = ClipArtifactManifest(
        method="coop",
        backbone=backbone_id,
        classnames=_classes(k),
        hparams={"n_ctx": 4, "csc": False, "class_token_position": "end"},
        source=f"benchmark coop {k}",
    )
    return PromptArtifact(
        manifest, {"ctx": (0.02 * rng.standard_normal((4, width))).astype(np.float32)}
    )


def maple_artifact(k: int, backbone_id: str, text_w: int, vision_w: int, depth: int = 9):
    """MaPLe's official shapes (N_CTX 2, PROMPT_DEPTH 9), fp16 as PREC fp16 saves them."""
    from promptserve.models.artifacts import PromptArtifact
    from promptserve.models.clip.artifacts import ClipArtifactManifest

    rng = np.random.default_rng(5000 + k)

    def rand(*shape, scale):
        return (scale * rng.standard_normal(shape)).astype(np.float16)

    tensors = {
        "ctx": rand(2, text_w, scale=0.02),
        "compound_prompts_text": rand(depth - 1, 2, text_w, scale=0.02),
        "proj.weight": rand(vision_w, text_w, scale=0.03),
        "proj.bias": rand(vision_w, scale=0.01),
        "compound_prompt_projections.weight": rand(depth - 1, vision_w, text_w, scale=0.03),
        "compound_prompt_projections.bias": rand(depth - 1, vision_w, scale=0.01),
    }
    manifest = ClipArtifactManifest(
        method="maple",
        backbone=backbone_id,
        classnames=_classes(k),
        hparams={"prompt_prefix": "a photo of a"},
        source=f"benchmark maple {k}",
    )
    return PromptArtifact(manifest, tensors)


# -- 1. bare engine -------------------------------------------------------------------------------


def bench_engine(bundle_dir: Path, jpegs: list[bytes], args) -> list[dict[str, Any]]:
    from promptserve.images import crop_uint8, decode_image, normalize
    from promptserve.models.bundle import Bundle
    from promptserve.models.clip.deep_prompts import (
        DeepPrompts,
        VisualPromptBatch,
        plan_vision_calls,
    )
    from promptserve.models.clip.methods import MaPLeMethod
    from promptserve.models.clip.runtime import ClipGraphs
    from promptserve.serving.engines.base import EngineOptions

    bundle = Bundle(bundle_dir)
    m, pre = bundle.manifest, bundle.manifest.config.preprocess
    slots = m.config.deep_prompts
    batch = args.batch
    crops = np.stack(
        [crop_uint8(decode_image(jpegs[i % len(jpegs)]), size=pre.size) for i in range(batch)]
    )
    pixels = normalize(crops, mean=pre.mean, std=pre.std)
    engine = ClipGraphs.create("onnxruntime", bundle, EngineOptions(threads=args.engine_threads))
    maple = [
        MaPLeMethod.visual_prompts(
            maple_artifact(k, m.backbone_id, m.config.text_width, slots.vision_width)
        )
        for k in range(batch)
    ]

    long_prompt = DeepPrompts(
        (0.02 * np.random.default_rng(0).standard_normal((9, 16, slots.vision_width))).astype(
            np.float32
        )
    )

    def stack(rows):
        return VisualPromptBatch.stack(rows, layers=slots.vision_layers, width=slots.vision_width)

    cases = {
        "plain graph": None,
        "prompted graph, plain rows": stack([None] * batch),
        "prompted graph, 1 MaPLe artifact": stack([maple[0]] * batch),
        f"prompted graph, {batch} MaPLe artifacts": stack(maple),
        "prompted graph, half plain half MaPLe": stack([maple[0], None] * (batch // 2)),
        # the longest prompt sets the padded length: plain rows then pay for 16 slots
        f"prompted graph, {batch - 1} plain + 1 row of 16 tokens": stack(
            [long_prompt] + [None] * (batch - 1)
        ),
    }
    runs = {
        name: (lambda p=prompts: engine.encode_image(pixels, p))
        if prompts
        else (lambda: engine.encode_image(pixels))
        for name, prompts in cases.items()
    }
    # what the encoder does with that last batch (encoder.split_plain_rows): two calls
    rows = [long_prompt] + [None] * (batch - 1)
    plan = plan_vision_calls(rows, image_tokens=slots.image_tokens, split_above=0.1)

    def split_run() -> None:
        for idx, prompted in plan:
            part = np.ascontiguousarray(pixels[idx])
            engine.encode_image(part, stack([rows[i] for i in idx]) if prompted else None)

    runs[f"same batch, split: {batch - 1} plain rows on the plain graph"] = split_run
    cases = dict.fromkeys(runs)
    for run in runs.values():  # first calls allocate; keep them out of every round
        run()
    per_case: dict[str, list[dict]] = {name: [] for name in cases}
    for r in range(args.rounds):  # interleaved, order reversed every other round
        for name in list(runs) if r % 2 == 0 else list(runs)[::-1]:
            run, times = runs[name], []
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < args.warmup_seconds:
                run()
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < args.engine_seconds or len(times) < 3:
                t = time.perf_counter()
                run()
                times.append(time.perf_counter() - t)
            wall = time.perf_counter() - t0
            per_case[name].append(
                {"images_per_s": batch * len(times) / wall, **latency_stats(times)}
            )
            print(
                f"[engine] round {r + 1} {name:<40} {per_case[name][-1]['images_per_s']:7.2f} img/s",
                flush=True,
            )
    return [
        {
            "case": name,
            "batch": batch,
            "images_per_s": statistics.median(p["images_per_s"] for p in rounds),
            "per_round_images_per_s": [p["images_per_s"] for p in rounds],
            "p50_ms": statistics.median(p["p50_ms"] for p in rounds),
        }
        for name, rounds in per_case.items()
    ]


# -- 2. served ------------------------------------------------------------------------------------


def _artifact_loads(metrics_port: int) -> float:
    import httpx

    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    return sum(
        float(m.group(1))
        for m in re.finditer(r"^ray_promptserve_artifact_loads_total\{[^}]*\} (\S+)$", text, re.M)
    )


def _stable_loads(metrics_port: int, wait_s: float = 12.0) -> float:
    """Ray reports metrics every 10 s; wait until two reads a report interval apart agree."""
    last = None
    for _ in range(10):
        time.sleep(wait_s)
        value = _artifact_loads(metrics_port)
        if value == last:
            return value
        last = value
    return float(last or 0.0)


def _register_all(client, artifacts: dict[str, Any], workdir: Path, desc: str) -> None:
    from tqdm.auto import tqdm

    def one(item):
        pid, art = item
        return client.register_prompt(art.save(workdir / pid), prompt_id=pid)

    with ThreadPoolExecutor(4) as pool:
        list(tqdm(pool.map(one, artifacts.items()), total=len(artifacts), desc=desc, unit="prompt"))


def bench_served(bundle_dir: Path, jpegs: list[bytes], args, report: dict) -> dict[str, Any]:

    from promptserve import Client
    from promptserve.models.bundle import Bundle
    from promptserve.models.clip.export.importers.templates import build_templates

    m = Bundle(bundle_dir).manifest
    workdir = Path(tempfile.mkdtemp(prefix="promptserve-mix-"))
    metrics_port = _free_port()
    n_all = args.coop_prompts + args.maple_prompts + 1
    config = fused_config(bundle_dir, workdir, args, prompts={"max_loaded": n_all + 8})
    report["config"]["app_config"] = config.model_dump(mode="json")
    coop = {
        f"coop-{k}": coop_artifact(k, m.backbone_id, m.config.text_width) for k in range(args.coop_prompts)
    }
    maple = {
        f"maple-{k}": maple_artifact(k, m.backbone_id, m.config.text_width, m.config.deep_prompts.vision_width)
        for k in range(args.maple_prompts)
    }
    plain = {
        "plain": build_templates(
            _classes(0), backbone_id=m.backbone_id, templates=["a photo of a {}."]
        )
    }

    def body(pid: str, k: int) -> bytes:
        image = base64.b64encode(jpegs[k % len(jpegs)]).decode("ascii")
        return json.dumps({"images": [image], "prompt_id": pid, "top_k": 5}).encode()

    streams = {
        "coop, 1 prompt_id": [[body("coop-0", k) for k in range(len(jpegs))]],
        f"coop, {len(coop)} prompt_ids": [[body(pid, k)] for k, pid in enumerate(coop)],
        "maple, 1 artifact": [[body("maple-0", k) for k in range(len(jpegs))]],
        f"maple, {len(maple)} artifacts": [[body(pid, k)] for k, pid in enumerate(maple)],
        "plain CLIP (templates)": [[body("plain", k) for k in range(len(jpegs))]],
    }
    pairs = {
        "coop mixed / single": (f"coop, {len(coop)} prompt_ids", "coop, 1 prompt_id"),
        "maple mixed / single": (f"maple, {len(maple)} artifacts", "maple, 1 artifact"),
        "maple single / plain": ("maple, 1 artifact", "plain CLIP (templates)"),
    }
    if args.only:
        streams = {k: v for k, v in streams.items() if k.startswith(args.only)}
        pairs = {k: v for k, v in pairs.items() if k == f"{args.only} mixed / single"}
    out: dict[str, Any] = {"rounds": [], "ratios": {}}
    with served_app(config, workdir, metrics_port=metrics_port) as url:
        with Client(url, timeout=300) as client:
            t = time.perf_counter()
            _register_all(client, {**plain, **coop, **maple}, workdir / "artifacts", "register")
            out["registration_s"] = time.perf_counter() - t
        print(f"[served] registered {n_all} prompts in {out['registration_s']:.0f}s", flush=True)
        asyncio.run(_rounds(f"{url}/v1/classify", streams, args, out, metrics_port))
    for name, (a, b) in pairs.items():
        per_round = [r[a]["images_per_s"] / r[b]["images_per_s"] for r in out["rounds"]]
        out["ratios"][name] = {"median": statistics.median(per_round), "per_round": per_round}
    return out


async def _rounds(url, streams, args, out, metrics_port) -> None:
    import httpx

    limits = httpx.Limits(max_connections=args.concurrency + 4)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(300)) as client:
        # warm-up: every prompt at least once (loads every head), then a short closed loop
        sem = asyncio.Semaphore(args.concurrency)

        async def once(body: bytes) -> None:
            async with sem:
                r = await client.post(
                    url, content=body, headers={"content-type": "application/json"}
                )
            if r.status_code != 200:
                raise RuntimeError(f"warm-up request failed: {r.status_code} {r.text[:300]}")

        for bodies in streams.values():
            await asyncio.gather(*(once(b[0]) for b in bodies))
            await _drive(client, url, bodies, args.concurrency, len(bodies), args.warmup_seconds)
        out["artifact_loads_after_warmup"] = _stable_loads(metrics_port)
        for r in range(args.rounds):
            row: dict[str, Any] = {}
            order = list(streams) if r % 2 == 0 else list(streams)[::-1]
            for name in order:
                bodies = streams[name]
                samples, t0 = await _drive(
                    client, url, bodies, args.concurrency, len(bodies), args.seconds
                )
                ok = [s for s in samples if s.status == 200]
                wall = max(s.end for s in samples) - t0
                sizes = [b for s in ok for b in s.batches]
                row[name] = {
                    "requests": len(samples),
                    "errors": len(samples) - len(ok),
                    "images_per_s": len(ok) / wall,
                    **latency_stats([s.end - s.start for s in ok]),
                    "mean_batch_images": float(np.mean(sizes)) if sizes else None,
                    "distinct_prompts": len(bodies),
                }
                p = row[name]
                print(
                    f"[served] round {r + 1} {name:<26} {p['images_per_s']:7.2f} img/s  "
                    f"p50 {p['p50_ms']:7.1f} ms  p99 {p['p99_ms']:7.1f} ms  "
                    f"batch {p['mean_batch_images'] or 0:5.1f}  errors {p['errors']}",
                    flush=True,
                )
            out["rounds"].append(row)
        out["artifact_loads_after_rounds"] = _stable_loads(metrics_port)
        out["reloads_during_rounds"] = (
            out["artifact_loads_after_rounds"] - out["artifact_loads_after_warmup"]
        )


# -- report ---------------------------------------------------------------------------------------


def markdown(report: dict) -> str:
    lines = [
        f"# prompt_mix — {report['timestamp']}",
        "",
        f"**{report['weights_note']}**",
        "",
        f"Machine: {report['machine'].get('cpu_model')}, {report['machine'].get('usable_cpus')} usable CPUs, "
        f"{report['machine'].get('ram_gib')} GiB; onnxruntime {report['machine'].get('onnxruntime_version')}, "
        f"ray {report['machine'].get('ray_version')}.",
        "",
    ]
    if report.get("engine"):
        base = report["engine"][0]["images_per_s"]
        lines += [f"## Bare engine, batch {report['engine'][0]['batch']}", "",
                  "| vision graph | img/s (median of rounds) | p50 ms | vs plain graph |", "|---|---:|---:|---:|"]  # fmt: skip
        for p in report["engine"]:
            lines.append(
                f"| {p['case']} | {p['images_per_s']:.1f} | {p['p50_ms']:.1f} | {p['images_per_s'] / base:.2f} |"
            )
        lines.append("")
    s = report.get("served")
    if s:
        lines += [
            f"## Served (fused topology, concurrency {report['config']['concurrency']}, "
            f"{report['config']['seconds']} s per point, {len(s['rounds'])} rounds)",
            "",
            "| stream | " + " | ".join(f"round {i + 1} img/s" for i in range(len(s["rounds"]))) + " | p50 ms | p99 ms | mean batch |",
            "|---|" + "---:|" * (len(s["rounds"]) + 3),
        ]  # fmt: skip
        for name in s["rounds"][0]:
            vals = [r[name] for r in s["rounds"]]
            lines.append(
                f"| {name} | " + " | ".join(f"{v['images_per_s']:.1f}" for v in vals)
                + f" | {vals[-1]['p50_ms']:.0f} | {vals[-1]['p99_ms']:.0f} | {vals[-1]['mean_batch_images'] or 0:.1f} |"
            )  # fmt: skip
        lines += ["", "| ratio | median | per round |", "|---|---:|---|"]
        for name, r in s["ratios"].items():
            lines.append(
                f"| {name} | **{r['median']:.3f}** | {', '.join(f'{x:.3f}' for x in r['per_round'])} |"
            )
        lines += [
            "",
            f"Artifact loads after warm-up: {s['artifact_loads_after_warmup']:.0f}; during the timed "
            f"rounds: **{s['reloads_during_rounds']:.0f}** (registration {s['registration_s']:.0f} s).",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="ViT-B-32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "promptserve" / "bench")
    p.add_argument("--coop-prompts", type=int, default=1000)
    p.add_argument("--maple-prompts", type=int, default=50)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--batch", type=int, default=32, help="bare-engine batch size")
    p.add_argument("--seconds", type=float, default=15.0, help="seconds per served point")
    p.add_argument("--engine-seconds", type=float, default=8.0)
    p.add_argument("--warmup-seconds", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--engine-threads", type=int, default=2)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--skip-engine", action="store_true")
    p.add_argument("--skip-serve", action="store_true")
    p.add_argument(
        "--only", choices=["coop", "maple"], help="served: only this method's two streams"
    )
    p.add_argument("--quick", action="store_true", help="100 CoOp / 10 MaPLe prompts, short points")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    if args.quick:
        args.coop_prompts, args.maple_prompts = 100, 10
        args.seconds, args.engine_seconds, args.rounds, args.warmup_seconds = 4.0, 2.0, 1, 1.0

    started = datetime.now()
    bundle_dir = ensure_bundle(args.arch, args.seed, args.cache)
    jpegs = [make_jpeg(k) for k in range(16)]
    report: dict[str, Any] = {
        "benchmark": "prompt_mix",
        "timestamp": started.isoformat(timespec="seconds"),
        "weights_note": WEIGHTS_NOTE.format(arch=args.arch, seed=args.seed),
        "machine": machine_info(args.engine_threads),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    if not args.skip_engine:
        report["engine"] = bench_engine(bundle_dir, jpegs, args)
    if not args.skip_serve:
        report["served"] = bench_served(bundle_dir, jpegs, args, report)
    md = markdown(report)
    save_report("prompt_mix", report, md, args.out)
    print("\n" + md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
