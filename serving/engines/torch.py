"""Eager torch engine: the bundle's backbone spec loaded with open_clip, run through the same
graph modules that export traced (exporters/graphs.py)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from promptserve._optional import require
from promptserve.exporters.bundle import Bundle
from promptserve.serving.engines.base import Engine, EngineOptions


class TorchEngine(Engine):
    name: ClassVar[str] = "torch"

    def __init__(self, bundle: Bundle, options: EngineOptions | None = None) -> None:
        super().__init__(bundle, options)
        torch = require("torch")
        from promptserve.exporters.graphs import TextGraph, VisionGraph

        if self.options.threads:
            torch.set_num_threads(self.options.threads)
        self._torch = torch
        model = bundle.manifest.backbone.load()
        self._vision = VisionGraph(model).eval()
        self._text = TextGraph(model).eval()

    def encode_image(self, pixel_values: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self._vision(self._torch.from_numpy(pixel_values)).numpy()

    def encode_text(self, token_embeddings: np.ndarray, eot_index: np.ndarray) -> np.ndarray:
        t = self._torch
        with t.inference_mode():
            return self._text(t.from_numpy(token_embeddings), t.from_numpy(eot_index)).numpy()
