"""Which torch module computes each of a CLIP bundle's graphs: the one mapping export traces
and the torch runtime runs, so the two cannot disagree on which graphs exist."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from promptserve.models.clip.bundle import (
    AnomalyGraphSpec,
    ClipBundleConfig,
    SegmentGraphSpec,
    WinCLIPGraphSpec,
)


def graph_modules(
    model: Any,
    *,
    deep_prompts: bool,
    anomaly: AnomalyGraphSpec | None = None,
    winclip: WinCLIPGraphSpec | None = None,
    segment: Iterable[SegmentGraphSpec] = (),
) -> dict[str, Any]:
    """Graph name -> torch module (eval mode) over an open_clip CLIP `model`."""
    from promptserve.models.clip.dense_graphs import (
        AnomalyCLIPVisionGraph,
        SegmentVisionGraph,
        WinCLIPVisionGraph,
    )
    from promptserve.models.clip.graphs import (
        PromptedTextGraph,
        PromptedVisionGraph,
        TextGraph,
        VisionGraph,
    )

    graphs: dict[str, Any] = {"vision": VisionGraph(model), "text": TextGraph(model)}
    if deep_prompts:
        graphs["vision_prompted"] = PromptedVisionGraph(model)
        graphs["text_prompted"] = PromptedTextGraph(model)
    if anomaly is not None:
        graphs["anomaly"] = AnomalyCLIPVisionGraph(
            model, image_size=anomaly.image_size, taps=anomaly.taps, dpam_layer=anomaly.dpam_layer
        )
    if winclip is not None:
        graphs["winclip"] = WinCLIPVisionGraph(
            model, scales=winclip.scales, geometric_windows=winclip.geometric_windows
        )
    for spec in segment:
        graphs[spec.graph] = SegmentVisionGraph(
            model, method=spec.method, image_size=spec.image_size
        )
    return {name: module.eval() for name, module in graphs.items()}


def bundle_modules(model: Any, config: ClipBundleConfig) -> dict[str, Any]:
    """The modules of every graph a bundle with this config has."""
    return graph_modules(
        model,
        deep_prompts=config.deep_prompts is not None,
        anomaly=config.anomaly,
        winclip=config.winclip,
        segment=config.segment.values(),
    )
