"""Eager torch runtime: the bundle's backbone loaded by its family and run through the same
graph modules that export traced (the family's `torch_graphs`), for every graph the bundle
has."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from promptserve.models.bundle import Bundle
from promptserve.optional import require
from promptserve.serving.engines.base import Engine, EngineOptions


class TorchEngine(Engine):
    name: ClassVar[str] = "torch"

    def __init__(self, bundle: Bundle, options: EngineOptions | None = None) -> None:
        super().__init__(bundle, options)
        torch = require("torch")
        if self.options.threads:
            torch.set_num_threads(self.options.threads)
        self._torch = torch
        self._graphs: dict[str, Any] = bundle.family.torch_graphs(bundle)
        missing = sorted(set(bundle.manifest.graphs) - set(self._graphs))
        if missing:  # the family's mapping and the bundle disagree: a bug, said at start
            raise RuntimeError(
                f"the {bundle.manifest.family} family has no torch module for {missing}"
            )

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        t = self._torch
        with t.inference_mode():
            out = self._graphs[graph](**{k: t.from_numpy(np.asarray(v)) for k, v in feeds.items()})
        return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]
