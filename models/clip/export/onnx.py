"""`promptserve export`: backbone -> ONNX bundle with a parity report.

Export fails loudly when ONNX Runtime and torch disagree above tolerance, so a bundle that
exists is a bundle that matches its backbone.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from promptserve.exporters.onnx import (
    FP32_TOLERANCE,
    check_report,
    parity,
    trace,
)
from promptserve.models.bundle import (
    BUNDLE_FILE,
    BundleManifest,
    GraphInfo,
    read_signature,
)
from promptserve.models.clip.backbone import BackboneSpec
from promptserve.models.clip.bundle import (
    AnomalyGraphSpec,
    ClipBundleConfig,
    PreprocessConfig,
    SegmentGraphSpec,
    WinCLIPGraphSpec,
)
from promptserve.models.clip.deep_prompts import DeepPromptSlots
from promptserve.models.clip.graph_set import graph_modules
from promptserve.models.clip.graphs import ClipModel, PromptedVisionGraph

if TYPE_CHECKING:
    from promptserve.models.clip.dense_graphs import (
        AnomalyCLIPVisionGraph,
        SegmentVisionGraph,
        WinCLIPVisionGraph,
    )
    from promptserve.models.clip.graphs import TextGraph, VisionGraph

    # a module of graph_modules(): each names its inputs, outputs and dynamic axes
    GraphModule = (
        VisionGraph
        | TextGraph
        | PromptedVisionGraph
        | AnomalyCLIPVisionGraph
        | WinCLIPVisionGraph
        | SegmentVisionGraph
    )

DEFAULT_MAX_PROMPT_TOKENS = 16
_PARITY_TEXTS = ["a photo of a dog.", "X X X X a cat.", "an origami airplane in the snow."]


def export_bundle(
    spec: BackboneSpec,
    out_dir: str | Path,
    *,
    tolerance: float = FP32_TOLERANCE,
    progress: bool = True,
    deep_prompts: bool = True,
    max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS,
    anomaly: AnomalyGraphSpec | None = None,
    winclip: WinCLIPGraphSpec | None = None,
    segment: Sequence[SegmentGraphSpec] = (),
) -> BundleManifest:
    """Export `spec`'s vision and text graphs to ONNX and check them against torch.

    With `deep_prompts`, the prompted variants (MaPLe, IVLP) are exported too: they cost a
    second copy of each tower's weights on disk and serve every deep-prompt artifact. With
    `anomaly`, AnomalyCLIP's dense vision graph at that input size; with `winclip`, WinCLIP's
    window graph; with `segment`, one segmentation graph per method (`grid` is filled in).

    Example:
        >>> export_bundle(BackboneSpec.parse("ViT-B-32:openai"), "bundles/vit-b-32")
    """
    import open_clip

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = tqdm(total=8, desc="export", disable=not progress, unit="step")
    bounds = {"batch": (1, 1 << 16), "prompt": (1, max_prompt_tokens)}

    steps.set_postfix_str("load backbone")
    model: ClipModel = spec.load()
    steps.update()

    with_deep = deep_prompts and _prompt_ready(model)
    modules = graph_modules(
        model, deep_prompts=with_deep, anomaly=anomaly, winclip=winclip, segment=segment
    )
    vision, text = modules["vision"], modules["text"]
    size = _image_size(model)
    pixels = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    steps.set_postfix_str("export vision graph")
    trace(vision, (pixels,), out / "vision.onnx", bounds)
    steps.update()

    tokenizer = open_clip.get_tokenizer(spec.arch)
    ids = tokenizer(_PARITY_TEXTS)
    with torch.no_grad():
        emb = model.token_embedding(ids)
    eot = ids.argmax(dim=-1)
    steps.set_postfix_str("export text graph")
    bounds["seq"] = (2, int(model.context_length))
    trace(text, (emb, eot), out / "text.onnx", bounds)
    steps.update()

    graphs = {"vision": (vision, (pixels,)), "text": (text, (emb, eot))}
    slots = None
    if deep_prompts and not _prompt_ready(model):
        steps.write(f"{spec.id}: no prompted graphs (deep prompts need a CLIP ViT)")
    elif with_deep:
        steps.set_postfix_str("export prompted graphs")
        pv, pt = modules["vision_prompted"], modules["text_prompted"]
        v_args, t_args = _prompted_examples(pv, pt, pixels, emb, eot, tokens=2)
        trace(pv, v_args, out / "vision_prompted.onnx", bounds)
        trace(pt, t_args, out / "text_prompted.onnx", bounds)
        # parity on other prompt lengths and depths than the traced ones
        graphs["vision_prompted"] = (pv, _prompted_examples(pv, pt, pixels, emb, eot, 3)[0])
        graphs["text_prompted"] = (pt, _prompted_examples(pv, pt, pixels, emb, eot, 3)[1])
        slots = DeepPromptSlots(
            vision_layers=pv.layers,
            vision_width=int(model.visual.conv1.weight.shape[0]),
            text_layers=pt.layers,
            max_tokens=max_prompt_tokens,
            image_tokens=int(model.visual.positional_embedding.shape[0]),
        )
    steps.update()

    if anomaly is not None:
        steps.set_postfix_str("export anomaly graph")
        dense = modules["anomaly"]
        big = torch.randn(
            2, 3, anomaly.image_size, anomaly.image_size, generator=torch.Generator().manual_seed(1)
        )
        trace(dense, (big,), out / "anomaly.onnx", bounds)
        graphs["anomaly"] = (dense, (big[:1],))
        anomaly = anomaly.model_copy(
            update={"grid": anomaly.image_size // model.visual.conv1.kernel_size[0]}
        )
    steps.update()

    if winclip is not None:
        steps.set_postfix_str("export winclip graph")
        windows = modules["winclip"]
        trace(windows, (pixels[:2],), out / "winclip.onnx", bounds)
        graphs["winclip"] = (windows, (pixels[2:],))
        winclip = winclip.model_copy(update={"grid": windows.grid})

    segment_specs = {}
    for seg in segment:
        steps.set_postfix_str(f"export {seg.graph} graph")
        graph = modules[seg.graph]
        crops = torch.randn(
            3, 3, seg.image_size, seg.image_size, generator=torch.Generator().manual_seed(2)
        )
        trace(graph, (crops[:2],), out / f"{seg.graph}.onnx", bounds)
        graphs[seg.graph] = (graph, (crops[2:],))
        grid = seg.image_size // model.visual.conv1.kernel_size[0]
        segment_specs[seg.method] = seg.model_copy(update={"grid": grid})

    steps.set_postfix_str("tokenizer + embeddings")
    from safetensors.torch import save_file

    save_file(
        {"weight": model.token_embedding.weight.detach().contiguous()},
        out / "token_embedding.safetensors",
    )
    shutil.copyfile(open_clip.tokenizer.default_bpe(), out / "bpe_simple_vocab_16e6.txt.gz")
    steps.update()

    steps.set_postfix_str("parity")
    report = {
        name: parity(module, out / f"{name}.onnx", args, tolerance)
        for name, (module, args) in graphs.items()
    }
    steps.update()

    signatures = {name: read_signature(out / f"{name}.onnx") for name in graphs}
    config = ClipBundleConfig(
        backbone=spec,
        embed_dim=int(model.text_projection.shape[-1]),
        text_width=int(model.token_embedding.weight.shape[1]),
        context_length=int(model.context_length),
        logit_scale=float(model.logit_scale.detach().exp()),
        preprocess=_preprocess_cfg(model),
        text_truncation=True,
        deep_prompts=slots,
        anomaly=anomaly,
        winclip=winclip,
        segment=segment_specs,
    )
    manifest = BundleManifest(
        family="clip",
        backbone_id=spec.id,
        config=config,
        graphs={
            name: GraphInfo(
                file=f"{name}.onnx",
                inputs=list(module.input_names),
                outputs=list(module.output_names),
                **dict(zip(("input_specs", "output_specs"), signatures[name], strict=True)),
            )
            for name, (module, _) in graphs.items()
        },
        parity=report,
    )
    (out / BUNDLE_FILE).write_text(manifest.model_dump_json(indent=2))
    steps.update()
    steps.close()
    check_report(report, what=f"ONNX export of {spec.id}", where=out / BUNDLE_FILE)
    return manifest


def _prompt_ready(model) -> bool:
    try:
        PromptedVisionGraph(model)
    except NotImplementedError:
        return False
    return True


def _prompted_examples(pv, pt, pixels, emb, eot, tokens: int) -> tuple[tuple, tuple]:
    """Seeded inputs for the prompted graphs: a plain sample, a shallow one, a deep one."""
    g = torch.Generator().manual_seed(tokens)
    width = pv.visual.conv1.weight.shape[0]
    visual = 0.1 * torch.randn(len(pixels), pv.layers, tokens, width, generator=g)
    v_args = (
        pixels,
        visual,
        torch.tensor([0, 1, tokens])[: len(pixels)],
        torch.tensor([0, 1, pv.layers])[: len(pixels)],
    )
    deep = 0.1 * torch.randn(pt.layers, tokens, emb.shape[-1], generator=g)
    return v_args, (emb, eot, deep, torch.tensor(pt.layers))


def _square(size: int | tuple[int, int] | list[int]) -> int:
    """open_clip sizes are an int or an (H, W) pair; promptserve serves square inputs."""
    return int(size if isinstance(size, int) else size[0])


def _image_size(model) -> int:
    return _square(model.visual.image_size)


def _preprocess_cfg(model) -> PreprocessConfig:
    from open_clip.model import get_model_preprocess_cfg

    cfg = get_model_preprocess_cfg(model)
    return PreprocessConfig(
        size=_square(cfg.get("size", model.visual.image_size)),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        interpolation=cfg.get("interpolation", "bicubic"),
        resize_mode=cfg.get("resize_mode", "shortest"),
    )
