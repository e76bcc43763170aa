"""CoCoOp throughput at 10 and 100 classes, and where the time goes.

CoCoOp's text side depends on each image (a meta-net bias on the context), so every batch of B
images costs B × n_cls text-encoder sequences on top of the vision pass. This script measures,
for ViT-B-32 with seeded random weights on the ONNX Runtime engine: vision pass, meta-net, text
encoder and the rest (prompt assembly, normalisation, logits) per batch, and images/s.

    python benchmarks/cocoop_classes.py [--batch 8] [--classes 10 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from serve_classify import ensure_bundle, machine_info

from promptserve.models.artifacts import PromptArtifact
from promptserve.models.bundle import Bundle
from promptserve.models.clip.artifacts import ClipArtifactManifest
from promptserve.models.clip.export.seeded import default_cache_dir
from promptserve.models.clip.methods import get_method
from promptserve.models.clip.runtime import ClipGraphs
from promptserve.serving.engines.base import EngineOptions

RESULTS = Path(__file__).parent / "results"


def cocoop_artifact(bundle: Bundle, n_cls: int, rng: np.random.Generator) -> PromptArtifact:
    m = bundle.manifest
    e, d, h = m.config.embed_dim, m.config.text_width, m.config.embed_dim // 16
    tensors = {
        "ctx": (rng.standard_normal((4, d)) * 0.02).astype(np.float32),
        "meta_net.linear1.weight": (rng.standard_normal((h, e)) / np.sqrt(e)).astype(np.float32),
        "meta_net.linear1.bias": np.zeros(h, np.float32),
        "meta_net.linear2.weight": (rng.standard_normal((d, h)) / np.sqrt(h)).astype(np.float32),
        "meta_net.linear2.bias": np.zeros(d, np.float32),
    }
    names = [f"object number {i}" for i in range(n_cls)]
    manifest = ClipArtifactManifest(
        method="cocoop", backbone=m.backbone_id, classnames=names, hparams={"n_ctx": 4}
    )
    return PromptArtifact(manifest, tensors)


def measure(engine, bundle: Bundle, n_cls: int, batch: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    art = cocoop_artifact(bundle, n_cls, rng)
    method = get_method("cocoop")
    tower = engine.text_tower
    head = method.make_head(art, method.class_features(art, tower), tower)
    text_s = [0.0]
    real_encode = tower._encode_fn

    def timed_encode(emb, eot):
        t0 = time.perf_counter()
        out = real_encode(emb, eot)
        text_s[0] += time.perf_counter() - t0
        return out

    tower._encode_fn = timed_encode
    size = bundle.manifest.config.preprocess.size
    pixels = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    w1, b1, w2, b2 = head.meta
    rows = []
    try:
        head.logits(engine.encode_image(pixels), bundle.manifest.config.logit_scale)  # warm-up
        for _ in range(repeats):
            text_s[0] = 0.0
            t0 = time.perf_counter()
            embeds = engine.encode_image(pixels)
            t1 = time.perf_counter()
            imf = embeds / np.linalg.norm(embeds, axis=-1, keepdims=True)
            np.maximum(imf @ w1.T + b1, 0) @ w2.T + b2  # the meta-net alone, for the breakdown
            t2 = time.perf_counter()
            head.logits(embeds, bundle.manifest.config.logit_scale)
            t3 = time.perf_counter()
            rows.append(
                {"vision": t1 - t0, "meta_net": t2 - t1, "head": t3 - t2, "text": text_s[0]}
            )
    finally:
        tower._encode_fn = real_encode
    med = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    total = med["vision"] + med["head"]
    return {
        "classes": n_cls,
        "batch": batch,
        "text_sequences_per_batch": batch * n_cls,
        "images_per_s": batch / total,
        "seconds_per_batch": total,
        "breakdown_s": {
            "vision": med["vision"],
            "meta_net": med["meta_net"],
            "text_encoder": med["text"],
            "prompt_assembly_and_logits": med["head"] - med["text"],
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--classes", type=int, nargs="+", default=[10, 100])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--engine-threads", type=int, default=2)
    args = p.parse_args()
    bundle = Bundle(ensure_bundle("ViT-B-32", 0, default_cache_dir() / "bench"))
    engine = ClipGraphs.create("onnxruntime", bundle, EngineOptions(threads=args.engine_threads))
    points = []
    for n in args.classes:
        r = measure(engine, bundle, n, args.batch, args.repeats)
        b = r["breakdown_s"]
        share = {k: v / r["seconds_per_batch"] for k, v in b.items()}
        print(
            f"{n:>4} classes, batch {args.batch}: {r['images_per_s']:6.2f} img/s "
            f"({r['seconds_per_batch']:.2f} s/batch: vision {share['vision']:.0%}, text encoder "
            f"{share['text_encoder']:.0%}, meta-net {share['meta_net']:.1%}, assembly+logits "
            f"{share['prompt_assembly_and_logits']:.0%})",
            flush=True,
        )
        points.append(r)
    stamp = datetime.now(timezone.utc)
    report = {
        "benchmark": "cocoop_classes",
        "when": stamp.isoformat(timespec="seconds"),
        "note": "ViT-B-32 with seeded RANDOM weights; compute cost equals real weights.",
        "machine": machine_info(args.engine_threads),
        "config": vars(args),
        "points": points,
    }
    lines = [
        f"# cocoop_classes — ViT-B-32 (random weights), {report['when']}",
        "",
        f"Machine: {report['machine'].get('cpu_model')}, {report['machine'].get('usable_cpus')} CPUs; "
        f"onnxruntime {report['machine'].get('onnxruntime_version')}, {args.engine_threads} threads.",
        "",
        "| classes | batch | text sequences | img/s | s/batch | vision | text encoder | meta-net | assembly + logits |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in points:
        b = r["breakdown_s"]
        lines.append(
            f"| {r['classes']} | {r['batch']} | {r['text_sequences_per_batch']} | {r['images_per_s']:.2f} | "
            f"{r['seconds_per_batch']:.2f} | {b['vision']:.3f} s | {b['text_encoder']:.3f} s | "
            f"{b['meta_net'] * 1000:.2f} ms | {b['prompt_assembly_and_logits']:.3f} s |"
        )
    RESULTS.mkdir(exist_ok=True)
    name = f"cocoop_classes-{stamp:%Y%m%d-%H%M}"
    for base in (name, "cocoop_classes-latest"):
        (RESULTS / f"{base}.json").write_text(json.dumps(report, indent=2))
        (RESULTS / f"{base}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / name}.{{json,md}}")


if __name__ == "__main__":
    main()
