"""ONNX Runtime engine: TensorRT > CUDA > CPU execution providers, by availability."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, TypeGuard

import numpy as np

from promptserve.models.bundle import Bundle
from promptserve.optional import require
from promptserve.serving.engines.base import Engine, EngineOptions
from promptserve.serving.engines.graph_rules import (
    TRT_PROVIDER,
    TensorRTOptions,
    provider_options,
    static_but_batch,
)

# the batch profile must cover any encoder.max_batch_size (AppConfig checks explicit options)
_TRT_DEFAULTS = TensorRTOptions(max_batch=256)
PREFERRED_PROVIDERS = (TRT_PROVIDER, "CUDAExecutionProvider", "CPUExecutionProvider")


class OnnxRuntimeEngine(Engine):
    name: ClassVar[str] = "onnxruntime"

    def __init__(
        self,
        bundle: Bundle,
        options: EngineOptions | None = None,
        graphs: Iterable[str] | None = None,
    ) -> None:
        """`graphs`: load only these (default: every graph of the bundle)."""
        super().__init__(bundle, options)
        ort = require("onnxruntime")
        available = set(ort.get_available_providers())
        wanted = self.options.providers or [p for p in PREFERRED_PROVIDERS if p in available]
        missing = [p for p in wanted if p not in available]
        if missing:
            raise ValueError(
                f"execution providers {missing} are not available; this onnxruntime has {sorted(available)}"
            )
        so = ort.SessionOptions()
        if self.options.threads:
            so.intra_op_num_threads = self.options.threads
        so.inter_op_num_threads = 1
        so.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if self.options.allow_spinning else "0"
        )
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.providers = wanted
        self._sessions = {
            name: ort.InferenceSession(
                str(bundle.graph_path(name)), so, providers=self._providers(name)
            )
            for name in (bundle.manifest.graphs if graphs is None else graphs)
        }

    def _providers(self, graph: str) -> list:
        """TensorRT gets the static-shape graphs, with a batch profile and an engine cache (so
        neither a new batch size nor a restart rebuilds engines); the others skip it."""
        if TRT_PROVIDER not in self.providers:
            return self.providers
        inputs, _ = self.bundle.signature(graph)
        shapes = {i.name: tuple(i.shape) for i in inputs}
        if not _named_dims(shapes) or not static_but_batch(shapes):
            return [p for p in self.providers if p != TRT_PROVIDER]
        trt = (
            TRT_PROVIDER,
            provider_options(
                shapes, self.options.tensorrt or _TRT_DEFAULTS, self.bundle.graph_path(graph)
            ),
        )
        return [trt if p == TRT_PROVIDER else p for p in self.providers]

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._sessions[graph].run(None, feeds)


def _named_dims(
    shapes: dict[str, tuple[int | str | None, ...]],
) -> TypeGuard[dict[str, tuple[int | str, ...]]]:
    """Whether every dim is a size or a named axis (ONNX may leave a dynamic dim unnamed, which
    is neither static nor the batch axis)."""
    return all(d is not None for dims in shapes.values() for d in dims)
