"""`promptserve demo`: the whole path on an embedded default, in one command.

Builds (or reuses) a tiny CLIP with seeded random weights, exports it to ONNX, writes a
templates, a CoOp and a MaPLe artifact (checkpoints in the official trainers' layouts, seeded),
serves them, classifies a few generated images through the SDK and prints the answers. The weights are random, so the labels are arbitrary; the
point is the machinery, and the closing message says how to use real weights.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSNAMES = ["red circle", "green square", "blue triangle", "striped_pattern", "night sky"]
REAL_WEIGHTS_HINT = """\
The demo backbone has RANDOM weights (no model can be downloaded here), so its labels are
arbitrary. With real weights:
  promptserve export --backbone ViT-B-32:openai -o bundles/vit-b-32          # open_clip tag
  promptserve export --backbone ViT-B-16@/models/clip_vit_b16.pt -o bundles/vit-b-16   # local file
  promptserve import coop prompt_learner/model.pth.tar-50 --classnames classes.txt \\
      --backbone ViT-B-16@/models/clip_vit_b16.pt -o artifacts/coop
  promptserve import maple MultiModalPromptLearner/model.pth.tar-5 --classnames classes.txt \\
      --backbone ViT-B-16@/models/clip_vit_b16.pt -o artifacts/maple
  promptserve serve config.yaml        # see examples/config.yaml
  promptserve export --family llm --backbone hf-hub:meta-llama/Meta-Llama-3-8B-Instruct -o bundles/llama3
  promptserve import promptreps --model llama3 --backbone meta-llama/Meta-Llama-3-8B-Instruct -o artifacts/reps
  promptserve serve examples/config-retrieve.yaml   # then: promptserve eval retrieve --data BEIR_DIR ...
  promptserve import peft ADAPTER_DIR -o artifacts/soft     # a PEFT prompt-tuning adapter
  promptserve serve examples/config-generate.yaml   # then: openai.OpenAI(base_url=".../v1"), model='soft'"""


def sample_images() -> list[tuple[str, bytes]]:
    """Simple drawings: a circle, a square, a triangle, stripes, a dark noisy sky."""
    rng = np.random.default_rng(0)
    out = []
    for name, draw in [
        ("circle.png", lambda d: d.ellipse((60, 40, 260, 240), fill=(220, 30, 30))),
        ("square.png", lambda d: d.rectangle((70, 50, 250, 230), fill=(30, 200, 40))),
        (
            "triangle.png",
            lambda d: d.polygon([(160, 30), (290, 250), (30, 250)], fill=(30, 60, 220)),
        ),
        (
            "stripes.png",
            lambda d: [d.rectangle((x, 0, x + 15, 280), fill=(0, 0, 0)) for x in range(0, 320, 30)],
        ),
    ]:
        img = Image.new("RGB", (320, 280), (245, 245, 240))
        draw(ImageDraw.Draw(img))
        out.append((name, _png(img)))
    sky = (rng.random((280, 320, 3)) < 0.01) * 255 + rng.integers(0, 25, (280, 320, 3))
    out.append(("sky.png", _png(Image.fromarray(sky.astype(np.uint8)))))
    return out


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def prepare(workdir: Path) -> tuple[Path, dict[str, Path]]:
    """Bundle and artifacts (templates, CoOp, MaPLe) for the demo backbone, reused if present."""
    from promptserve.models.bundle import Bundle, BundleError
    from promptserve.models.clip.bundle import SegmentGraphSpec, WinCLIPGraphSpec
    from promptserve.models.clip.export.importers.coop import import_coop
    from promptserve.models.clip.export.importers.deep import import_maple
    from promptserve.models.clip.export.importers.templates import build_templates
    from promptserve.models.clip.export.onnx import export_bundle
    from promptserve.models.clip.export.seeded import seeded_backbone

    spec = seeded_backbone()
    bundle = workdir / "bundles" / "demo"
    try:
        m = Bundle(bundle).manifest
        stale = (
            m.backbone_id != spec.id
            or m.config.deep_prompts is None
            or not (m.config.winclip and m.config.segment)
        )
    except BundleError:
        stale = True
    if stale:  # none yet, or one from an older demo backbone
        print("exporting the demo backbone to ONNX ...", flush=True)
        export_bundle(
            spec, bundle, winclip=WinCLIPGraphSpec(), segment=[SegmentGraphSpec(method="sclip")]
        )
    slots = Bundle(bundle).manifest.config.deep_prompts
    templates = build_templates(CLASSNAMES, backbone_id=spec.id, templates="imagenet80").save(
        workdir / "artifacts" / "demo-templates"
    )
    checkpoint = write_demo_coop_checkpoint(
        workdir / "checkpoints" / "prompt_learner" / "model.pth.tar-50", spec
    )
    coop = import_coop(checkpoint, classnames=CLASSNAMES, backbone=spec).save(
        workdir / "artifacts" / "demo-coop"
    )
    checkpoint = write_demo_maple_checkpoint(
        workdir / "checkpoints" / "MultiModalPromptLearner" / "model.pth.tar-5",
        text_width=spec.text_width(),
        vision_width=slots.vision_width,
        depth=slots.vision_layers,
    )
    maple = import_maple(checkpoint, classnames=CLASSNAMES, backbone=spec).save(
        workdir / "artifacts" / "demo-maple"
    )
    return bundle, {"demo-templates": templates, "demo-coop": coop, "demo-maple": maple}


def write_demo_maple_checkpoint(
    path: Path, *, text_width: int, vision_width: int, depth: int
) -> Path:
    """A MaPLe checkpoint in the official trainer's layout (the prompt learner's keys; the real
    ones also hold the frozen backbone), seeded and untrained, 2 tokens per layer."""
    import torch

    g = torch.Generator().manual_seed(0)

    def rand(*shape: int, scale: float):
        return torch.randn(*shape, generator=g) * scale

    state = {
        "prompt_learner.ctx": rand(2, text_width, scale=0.02).half(),
        "prompt_learner.proj.weight": rand(vision_width, text_width, scale=0.05).half(),
        "prompt_learner.proj.bias": rand(vision_width, scale=0.01).half(),
    }
    for i in range(depth - 1):
        state[f"prompt_learner.compound_prompts_text.{i}"] = rand(2, text_width, scale=0.02)
        key = f"prompt_learner.compound_prompt_projections.{i}"
        state[f"{key}.weight"] = rand(vision_width, text_width, scale=0.05)
        state[f"{key}.bias"] = rand(vision_width, scale=0.01)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": state, "epoch": 5, "optimizer": {}, "scheduler": {}}, path)
    return path


def write_demo_coop_checkpoint(path: Path, spec) -> Path:
    """A CoOp checkpoint in the official trainer's layout, with a seeded (untrained) context."""
    import torch

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        ctx = torch.randn(4, spec.text_width(), generator=torch.Generator().manual_seed(0)) * 0.02
        torch.save(
            {"state_dict": {"ctx": ctx}, "epoch": 50, "optimizer": {}, "scheduler": {}}, path
        )
    return path


def run_demo(
    *, workdir: Path | None = None, port: int = 8000, once: bool = False, retrieval: bool = True
) -> int:
    from promptserve import Client, overlay, segment_overlay
    from promptserve.models.clip.export.seeded import default_cache_dir
    from promptserve.serving import run
    from promptserve.serving.config import AppConfig

    workdir = Path(workdir or default_cache_dir() / "demo")
    bundle, artifacts = prepare(workdir)
    store = tempfile.mkdtemp(prefix="promptserve-demo-store-")
    config = AppConfig.model_validate(
        {
            "bundle": str(bundle),
            "http": {"port": port},
            "prompts": {"store": store},
            "log_level": "WARNING",
        }
    )
    print("starting Ray Serve ...", flush=True)
    url = run.start(config)
    try:
        run.wait_ready(url)
        with Client(url) as client:
            for prompt_id, artifact in artifacts.items():
                client.register_prompt(artifact, prompt_id=prompt_id)
            images = sample_images()
            print(f"\nserving {client.model_info().backbone} at {url}\n")
            for prompt_id in artifacts:
                result = client.classify([b for _, b in images], prompt_id=prompt_id, top_k=2)
                print(f"prompt {prompt_id}:")
                print(f"  {'image':<14} {'top-1':<16} {'p':>6}   {'top-2':<16} {'p':>6}")
                for (name, _), r in zip(images, result.results, strict=True):
                    a, b = r.top[0], r.top[1]
                    print(
                        f"  {name:<14} {a.label:<16} {a.score:6.3f}   {b.label:<16} {b.score:6.3f}"
                    )
                print()
            free = client.classify(
                [images[0][1]], labels=["a red circle", "a green square"], top_k=2
            )
            print(
                f"free labels on circle.png: {[(t.label, round(t.score, 3)) for t in free.results[0].top]}\n"
            )
            anomaly = client.detect_anomalies(images[0][1], object_name="circle").results[0]
            picture = workdir / "anomaly-circle.png"
            overlay(images[0][1], anomaly.anomaly_map()).save(picture)
            print(f"WinCLIP on circle.png: score {anomaly.score:.3f}, anomaly map at {picture}")
            seg = client.segment(images[0][1], labels=["background", "circle"])
            picture = workdir / "segment-circle.png"
            segment_overlay(images[0][1], seg.results[0].labels(), seg.labels).save(picture)
            print(f"SCLIP on circle.png, labels {seg.labels}: label map at {picture}\n")
        if retrieval:
            from promptserve.demo_retrieve import run_retrieval

            run_retrieval(workdir, port=port)
        print(REAL_WEIGHTS_HINT)
        if not once:
            print(f"\nstill serving at {url} (docs at {url}/docs); Ctrl-C to stop", flush=True)
            import threading

            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        run.stop()
    return 0
