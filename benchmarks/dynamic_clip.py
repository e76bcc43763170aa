"""Per-image dynamic prompting on CLIP: images/s when every image of a batch chose differently
÷ when they all chose the same prompts, for `l2p` and `mocoop`.

The encoder's computation without Ray (models/clip/serve/encoder.py): L2P = plain vision pass
(the query), routing, one prompted-graph call over rows carrying their own prompt tokens,
logits; MoCoOp = one plain pass, gate, [B, K*C] logits, per-row mix of two experts. "single":
every image chose the same pool entries; "mixed": (nearly) every image chose its own. Plain
CLIP (one vision pass, one matmul) is measured beside them. Rounds are interleaved (the order
of the configurations rotates each round) and medians reported. ViT-B-32 with seeded random
weights on ONNX Runtime: compute cost equals real weights, choices are synthetic.

    python benchmarks/dynamic_clip.py [--batch 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from serve_classify import ensure_bundle, machine_info

from promptserve.models.artifacts import PromptArtifact
from promptserve.models.bundle import Bundle
from promptserve.models.clip.artifacts import ClipArtifactManifest
from promptserve.models.clip.deep_prompts import VisualPromptBatch
from promptserve.models.clip.export.seeded import default_cache_dir
from promptserve.models.clip.methods import get_method
from promptserve.models.clip.runtime import ClipGraphs
from promptserve.serving.engines.base import EngineOptions

RESULTS = Path(__file__).parent / "results"
CLASSES = [f"object number {i}" for i in range(100)]
POOL, LENGTH, TOP_N = 10, 5, 3  # l2p-pytorch: pool 10, length 5; top 3 fits 16 prompt slots
EXPERTS = ["a photo of a {}.", "{} texture.", "a low resolution photo of the {}.", "art of a {}."]


def _head(engine, bundle: Bundle, method: str, tensors: dict, **manifest):
    m = bundle.manifest
    art = PromptArtifact(
        ClipArtifactManifest(method=method, backbone=m.backbone_id, classnames=CLASSES, **manifest),
        tensors,
    )
    meth = get_method(method)
    meth.validate(art, m.config)
    return meth.make_head(art, meth.class_features(art, engine.text_tower), engine.text_tower)


def l2p_heads(engine, bundle: Bundle, query: np.ndarray) -> dict:
    """mixed: image i's own feature is key i (distinct first choices); single: three keys near
    the batch's mean feature, which every image ranks first, in the same order."""
    rng = np.random.default_rng(0)
    cfg = bundle.manifest.config
    prompt = rng.standard_normal((POOL, LENGTH, cfg.deep_prompts.vision_width)).astype(np.float32)
    mixed = rng.standard_normal((POOL, cfg.embed_dim)).astype(np.float32)
    mixed[: min(POOL, len(query))] = query[:POOL]
    mean = query.mean(axis=0) / np.linalg.norm(query.mean(axis=0))
    single = rng.standard_normal((POOL, cfg.embed_dim)).astype(np.float32)
    # keys 0, 1, 2 at growing distances from the mean, so every image ranks them in that order
    offsets = rng.standard_normal((TOP_N, cfg.embed_dim)) / np.sqrt(cfg.embed_dim)
    single[:TOP_N] = mean + np.arange(TOP_N)[:, None] * 0.5 * offsets
    return {
        name: _head(engine, bundle, "l2p", {"prompt": prompt, "prompt_key": keys},
                    hparams={"top_n": TOP_N})
        for name, keys in (("mixed", mixed), ("single", single))
    }  # fmt: skip


def mocoop_heads(engine, bundle: Bundle, query: np.ndarray) -> dict:
    """mixed: a random gate (images spread over the experts); single: a gate whose bias makes
    experts 0 and 1 win for every image."""
    rng = np.random.default_rng(1)
    cfg = bundle.manifest.config
    k = len(EXPERTS)
    tensors: dict[str, np.ndarray] = {}
    for i, t in enumerate(EXPERTS):
        before, after = t.replace(".", "").split("{}")
        n_b = len(before[:-1].split(" ")) if before[:-1] else 0
        n_a = len(after.split(" ")) if after else 0
        tensors[f"ctx_before.{i}"] = 0.02 * rng.standard_normal((n_b, cfg.text_width))
        tensors[f"ctx_after.{i}"] = 0.02 * rng.standard_normal((n_a, cfg.text_width))
    tensors = {key: v.astype(np.float32) for key, v in tensors.items()}
    gate = (30 * rng.standard_normal((k, cfg.embed_dim))).astype(np.float32)
    heads = {}
    for name, bias in (("mixed", np.zeros(k)), ("single", np.array([1e4, 5e3, 0, 0]))):
        heads[name] = _head(
            engine, bundle, "mocoop",
            tensors | {"gate.weight": gate, "gate.bias": bias.astype(np.float32)},
            hparams={"templates": EXPERTS},
        )  # fmt: skip
    return heads


def l2p_step(engine, head, pixels: np.ndarray, scale: float) -> int:
    slots = engine.deep_slots
    routing = head.route(engine.encode_image(pixels))
    rows: list = [None] * len(pixels)
    for prompts, idx in routing.groups:
        for i in idx:
            rows[i] = prompts
    batch = VisualPromptBatch.stack(rows, layers=slots.vision_layers, width=slots.vision_width)
    head.logits(engine.encode_image(pixels, batch), scale)
    return len(routing.groups)


def mocoop_step(engine, head, pixels: np.ndarray, scale: float) -> int:
    embeds = engine.encode_image(pixels)
    head.logits(embeds, scale)
    return len({tuple(r) for r in head.route(embeds)[0].tolist()})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--engine-threads", type=int, default=2)
    args = p.parse_args()
    bundle = Bundle(ensure_bundle("ViT-B-32", 0, default_cache_dir() / "bench"))
    engine = ClipGraphs.create("onnxruntime", bundle, EngineOptions(threads=args.engine_threads))
    cfg = bundle.manifest.config
    size, scale = cfg.preprocess.size, cfg.logit_scale
    pixels = np.random.default_rng(2).standard_normal((args.batch, 3, size, size))
    pixels = pixels.astype(np.float32)
    query = engine.encode_image(pixels)
    l2p, moe = l2p_heads(engine, bundle, query), mocoop_heads(engine, bundle, query)
    plain = _head(engine, bundle, "templates", {})
    configs: dict[str, Callable[[], int]] = {
        "plain CLIP": lambda: (plain.logits(engine.encode_image(pixels), scale), 1)[1],
        "l2p single": lambda: l2p_step(engine, l2p["single"], pixels, scale),
        "l2p mixed": lambda: l2p_step(engine, l2p["mixed"], pixels, scale),
        "mocoop single": lambda: mocoop_step(engine, moe["single"], pixels, scale),
        "mocoop mixed": lambda: mocoop_step(engine, moe["mixed"], pixels, scale),
    }
    choices = {name: fn() for name, fn in configs.items()}  # warm-up; distinct choices
    times: dict[str, list[float]] = {name: [] for name in configs}
    names = list(configs)
    for r in range(args.repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            configs[name]()
            times[name].append(time.perf_counter() - t0)
    ips = {name: args.batch / float(np.median(t)) for name, t in times.items()}
    ratios = {
        "l2p mixed / single": ips["l2p mixed"] / ips["l2p single"],
        "mocoop mixed / single": ips["mocoop mixed"] / ips["mocoop single"],
        "l2p single / plain CLIP": ips["l2p single"] / ips["plain CLIP"],
        "mocoop single / plain CLIP": ips["mocoop single"] / ips["plain CLIP"],
    }
    for name in names:
        print(f"{name:>14}: {ips[name]:7.2f} img/s ({choices[name]} distinct choices)")
    for name, v in ratios.items():
        print(f"{name}: {v:.3f}")
    stamp = datetime.now(timezone.utc)
    report = {
        "benchmark": "dynamic_clip",
        "when": stamp.isoformat(timespec="seconds"),
        "note": "ViT-B-32 with seeded RANDOM weights; compute cost equals real weights.",
        "machine": machine_info(args.engine_threads),
        "config": vars(args) | {"classes": len(CLASSES), "pool": POOL, "length": LENGTH,
                                "top_n": TOP_N, "experts": len(EXPERTS)},
        "images_per_s": ips,
        "distinct_choices": choices,
        "ratios": ratios,
    }  # fmt: skip
    mach = report["machine"]
    lines = [
        f"# dynamic_clip — ViT-B-32 (random weights), {report['when']}",
        "",
        f"Machine: {mach.get('cpu_model')}, {mach.get('usable_cpus')} CPUs; onnxruntime "
        f"{mach.get('onnxruntime_version')}, {args.engine_threads} threads. Batch {args.batch}, "
        f"{len(CLASSES)} classes; L2P pool {POOL} x {LENGTH} tokens, top {TOP_N}; MoCoOp "
        f"{len(EXPERTS)} experts, top 2. Medians of {args.repeats} interleaved rounds.",
        "",
        "| configuration | img/s | distinct choices in the batch |",
        "|---|---:|---:|",
        *(f"| {n} | {ips[n]:.2f} | {choices[n]} |" for n in names),
        "",
        "| ratio | value |",
        "|---|---:|",
        *(f"| {n} | {v:.3f} |" for n, v in ratios.items()),
    ]
    RESULTS.mkdir(exist_ok=True)
    name = f"dynamic_clip-{stamp:%Y%m%d-%H%M}"
    for base in (name, "dynamic_clip-latest"):
        (RESULTS / f"{base}.json").write_text(json.dumps(report, indent=2))
        (RESULTS / f"{base}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / name}.{{json,md}}")


if __name__ == "__main__":
    main()
