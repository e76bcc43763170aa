"""Eager torch engine: the bundle's backbone spec loaded with open_clip, run through the same
graph modules that export traced (exporters/graphs.py)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from promptserve._optional import require
from promptserve.exporters.bundle import Bundle
from promptserve.exporters.deep_prompts import DeepPrompts, VisualPromptBatch
from promptserve.serving.engines.base import Engine, EngineOptions


class TorchEngine(Engine):
    name: ClassVar[str] = "torch"

    def __init__(self, bundle: Bundle, options: EngineOptions | None = None) -> None:
        super().__init__(bundle, options)
        torch = require("torch")
        from promptserve.exporters.graphs import (
            PromptedTextGraph,
            PromptedVisionGraph,
            TextGraph,
            VisionGraph,
        )

        if self.options.threads:
            torch.set_num_threads(self.options.threads)
        self._torch = torch
        model = bundle.manifest.backbone.load()
        self._vision = VisionGraph(model).eval()
        self._text = TextGraph(model).eval()
        if (windows := bundle.manifest.winclip) is not None:
            from promptserve.exporters.dense_graphs import WinCLIPVisionGraph

            self._windows = WinCLIPVisionGraph(
                model, scales=windows.scales, geometric_windows=windows.geometric_windows
            ).eval()
        if (spec := bundle.manifest.anomaly) is not None:
            from promptserve.exporters.dense_graphs import AnomalyCLIPVisionGraph

            self._anomaly = AnomalyCLIPVisionGraph(
                model, image_size=spec.image_size, taps=spec.taps, dpam_layer=spec.dpam_layer
            ).eval()
        if bundle.manifest.deep_prompts is not None:
            self._vision_prompted = PromptedVisionGraph(model).eval()
            self._text_prompted = PromptedTextGraph(model).eval()

    def _run(self, graph, feeds: dict[str, np.ndarray]) -> np.ndarray:
        t = self._torch
        with t.inference_mode():
            return graph(**{k: t.from_numpy(np.asarray(v)) for k, v in feeds.items()}).numpy()

    def encode_image(
        self, pixel_values: np.ndarray, prompts: VisualPromptBatch | None = None
    ) -> np.ndarray:
        if prompts is None:
            return self._run(self._vision, {"pixel_values": pixel_values})
        self.deep_slots  # noqa: B018 -- a clear error for bundles without prompted graphs
        return self._run(self._vision_prompted, {"pixel_values": pixel_values, **prompts.inputs()})

    def encode_anomaly(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.anomaly_spec  # noqa: B018 -- a clear error for bundles without the graph
        return self._run_pair(self._anomaly, pixel_values)

    def encode_windows(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.winclip_spec  # noqa: B018 -- a clear error for bundles without the graph
        return self._run_pair(self._windows, pixel_values)

    def _run_pair(self, graph, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dense graphs return (image_embeds, dense outputs)."""
        t = self._torch
        with t.inference_mode():
            first, second = graph(t.from_numpy(pixel_values))
        return first.numpy(), second.numpy()

    def encode_text(
        self,
        token_embeddings: np.ndarray,
        eot_index: np.ndarray,
        deep: DeepPrompts | None = None,
    ) -> np.ndarray:
        feeds = {"token_embeddings": token_embeddings, "eot_index": eot_index}
        if deep is None:
            return self._run(self._text, feeds)
        self.deep_slots  # noqa: B018
        return self._run(self._text_prompted, feeds | self.text_deep_inputs(deep))
