"""ONNX Runtime engine: TensorRT > CUDA > CPU execution providers, by availability."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from promptserve._optional import require
from promptserve.exporters.bundle import Bundle
from promptserve.exporters.deep_prompts import DeepPrompts, VisualPromptBatch
from promptserve.serving.engines.base import Engine, EngineOptions

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


class OnnxRuntimeEngine(Engine):
    name: ClassVar[str] = "onnxruntime"

    def __init__(self, bundle: Bundle, options: EngineOptions | None = None) -> None:
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
            name: ort.InferenceSession(str(bundle.graph_path(name)), so, providers=wanted)
            for name in bundle.manifest.graphs
        }

    def encode_image(
        self, pixel_values: np.ndarray, prompts: VisualPromptBatch | None = None
    ) -> np.ndarray:
        if prompts is None:
            return self._sessions["vision"].run(None, {"pixel_values": pixel_values})[0]
        self.deep_slots  # noqa: B018 -- a clear error for bundles without prompted graphs
        feeds = {"pixel_values": pixel_values, **prompts.inputs()}
        return self._sessions["vision_prompted"].run(None, feeds)[0]

    def encode_anomaly(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.anomaly_spec  # noqa: B018 -- a clear error for bundles without the graph
        image, patches = self._sessions["anomaly"].run(None, {"pixel_values": pixel_values})
        return image, patches

    def encode_windows(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.winclip_spec  # noqa: B018 -- a clear error for bundles without the graph
        image, windows = self._sessions["winclip"].run(None, {"pixel_values": pixel_values})
        return image, windows

    def encode_text(
        self,
        token_embeddings: np.ndarray,
        eot_index: np.ndarray,
        deep: DeepPrompts | None = None,
    ) -> np.ndarray:
        feeds = {"token_embeddings": token_embeddings, "eot_index": eot_index}
        if deep is None:
            return self._sessions["text"].run(None, feeds)[0]
        return self._sessions["text_prompted"].run(None, feeds | self.text_deep_inputs(deep))[0]
