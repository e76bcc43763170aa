"""Eager torch engine: the bundle's backbone spec loaded with open_clip, run through the same
graph modules that export traced (models/clip/graphs.py)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from promptserve._optional import require
from promptserve.models.bundle import Bundle
from promptserve.serving.engines.base import Engine, EngineOptions


class TorchEngine(Engine):
    name: ClassVar[str] = "torch"

    def __init__(self, bundle: Bundle, options: EngineOptions | None = None) -> None:
        super().__init__(bundle, options)
        torch = require("torch")
        from promptserve.models.clip.dense_graphs import AnomalyCLIPVisionGraph, WinCLIPVisionGraph
        from promptserve.models.clip.graphs import (
            PromptedTextGraph,
            PromptedVisionGraph,
            TextGraph,
            VisionGraph,
        )

        if self.options.threads:
            torch.set_num_threads(self.options.threads)
        self._torch = torch
        model = bundle.manifest.backbone.load()
        m = bundle.manifest
        graphs = {"vision": VisionGraph(model), "text": TextGraph(model)}
        if m.deep_prompts is not None:
            graphs |= {
                "vision_prompted": PromptedVisionGraph(model),
                "text_prompted": PromptedTextGraph(model),
            }
        if m.anomaly is not None:
            graphs["anomaly"] = AnomalyCLIPVisionGraph(
                model, image_size=m.anomaly.image_size, taps=m.anomaly.taps,
                dpam_layer=m.anomaly.dpam_layer,
            )  # fmt: skip
        if m.winclip is not None:
            graphs["winclip"] = WinCLIPVisionGraph(
                model, scales=m.winclip.scales, geometric_windows=m.winclip.geometric_windows
            )
        self._graphs = {name: g.eval() for name, g in graphs.items()}

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        t = self._torch
        with t.inference_mode():
            out = self._graphs[graph](**{k: t.from_numpy(np.asarray(v)) for k, v in feeds.items()})
        return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]
