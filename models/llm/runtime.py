"""The LLM family's graph as a call, on any runtime: token ids in, PromptReps' dense and
sparse representations out.

A runtime (serving/engines/) runs a bundle's named graphs and knows no family; this class
gives the `promptreps` graph its verb, with the input checks that make a bad batch a clear
error instead of a runtime's shape complaint. Serving imports it, so no torch here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from promptserve.models.bundle import Bundle
from promptserve.models.llm.bundle import LlmBundleConfig, llm_config

if TYPE_CHECKING:
    from promptserve.serving.engines.base import Engine, EngineOptions

GRAPH = "promptreps"
WARMUP_SHAPE = (2, 16)  # a batch of two one-bucket rows: loads weights, plans kernels


class LlmGraphs:
    """`encode` over one runtime's `run(graph, feeds)`; outputs numpy float32."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.bundle: Bundle = engine.bundle
        self.config: LlmBundleConfig = llm_config(engine.bundle)  # BundleError if not llm

    @classmethod
    def create(
        cls, name: str, bundle: Bundle, options: EngineOptions | None = None, **kwargs: Any
    ) -> LlmGraphs:
        """A runtime by name (`onnxruntime`, `torch`, `triton`) wrapped for the LLM family."""
        from promptserve.serving.engines.base import create_engine

        return cls(create_engine(name, bundle, options, **kwargs))

    def close(self) -> None:
        self.engine.close()

    def encode(
        self, input_ids: np.ndarray, attention_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Right-padded [B, T] ids and mask (1 for real tokens, first) -> (dense [B, H]
        L2-normalised, sparse [B, V] = log1p(relu(next-token logits))), both read at each
        row's last real token."""
        ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        mask = np.ascontiguousarray(attention_mask, dtype=np.int64)
        if ids.ndim != 2 or ids.shape != mask.shape:
            raise ValueError(
                f"input_ids {ids.shape} and attention_mask {mask.shape} must be the same [B, T]"
            )
        if ids.shape[1] > self.config.max_positions:
            raise ValueError(
                f"{ids.shape[1]} tokens is beyond the model's {self.config.max_positions} positions"
            )
        # the graph reads position mask.sum(1) - 1: right only if real tokens come first
        if ids.size and (
            np.any(mask[:, 0] != 1) or np.any(mask[:, 1:] > mask[:, :-1]) or mask.max() > 1
        ):
            raise ValueError("attention_mask must be 1s then 0s (right-padded), 1 token or more")
        dense, sparse = self.engine.run(GRAPH, {"input_ids": ids, "attention_mask": mask})
        return dense, sparse

    def warmup(self) -> None:
        """One small batch through the graph, so the first request does not pay for loading
        and planning."""
        ids = np.full(WARMUP_SHAPE, self.config.pad_token_id, np.int64)
        mask = np.zeros(WARMUP_SHAPE, np.int64)
        mask[0, :] = 1
        mask[1, : WARMUP_SHAPE[1] // 2] = 1
        self.encode(ids, mask)
