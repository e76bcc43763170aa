"""Deep prompts as data: per-layer prompt tokens (MaPLe, IVLP/PromptSRC) and how a batch of
requests for different artifacts becomes one call of the prompted vision graph.

Convention (shared with models/clip/graphs.py): `tokens[i]` are the prompt tokens entering
transformer layer i; layers at or beyond `depth = len(tokens)` carry the previous layer's
prompt outputs on, as the official implementations do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class DeepPromptSlots(BaseModel):
    """What a bundle's prompted graphs accept (absent from bundles exported without them)."""

    model_config = ConfigDict(frozen=True)

    vision_layers: int = Field(description="Transformer layers of the vision tower.")
    vision_width: int
    text_layers: int
    max_tokens: int = Field(description="Most prompt tokens per layer the graphs take.")
    image_tokens: int | None = Field(
        None, description="Tokens per image without prompts (patches + class token)."
    )


def fp16_round(x: np.ndarray) -> np.ndarray:
    """The official code casts deep prompts with `.half()` before use, in fp32 models too."""
    return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)


@dataclass(frozen=True, eq=False)
class DeepPrompts:
    tokens: np.ndarray  # [depth, n_tokens, width] float32

    @property
    def depth(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.shape[1])

    def padded(self, layers: int, slots: int) -> np.ndarray:
        """[layers, slots, width], zeros past the depth and the token count."""
        out = np.zeros((layers, slots, self.tokens.shape[2]), np.float32)
        out[: self.depth, : self.n_tokens] = self.tokens
        return out


@dataclass(frozen=True)
class VisualPromptBatch:
    """Inputs of the prompted vision graph other than the pixels."""

    visual_prompts: np.ndarray  # [B, layers, P, W] float32
    prompt_tokens: np.ndarray  # [B] int64, 0 for plain CLIP samples
    prompt_depth: np.ndarray  # [B] int64

    @classmethod
    def stack(
        cls,
        per_sample: Sequence[DeepPrompts | None],
        *,
        layers: int,
        width: int,
    ) -> VisualPromptBatch:
        """One row per image; None rows are plain CLIP (all prompt slots masked)."""
        slots = max([p.n_tokens for p in per_sample if p is not None], default=1)
        out = np.zeros((len(per_sample), layers, slots, width), np.float32)
        tokens = np.zeros(len(per_sample), np.int64)
        depth = np.zeros(len(per_sample), np.int64)
        for i, p in enumerate(per_sample):
            if p is not None:
                out[i, : p.depth, : p.n_tokens] = p.tokens
                tokens[i], depth[i] = p.n_tokens, p.depth
        return cls(out, tokens, depth)

    def inputs(self) -> dict[str, np.ndarray]:
        return {
            "visual_prompts": self.visual_prompts,
            "prompt_tokens": self.prompt_tokens,
            "prompt_depth": self.prompt_depth,
        }


def plan_vision_calls(
    rows: Sequence[DeepPrompts | None], *, image_tokens: int | None, split_above: float
) -> list[tuple[np.ndarray, bool]]:
    """Which rows go through which vision graph: `[(row indices, prompted?)]`.

    A batch pads every row to its longest prompt, so plain rows in a deep-prompt batch pay for
    `longest / image_tokens` more tokens. Below `split_above` one prompted call is cheaper than
    two calls; above it the plain rows take the plain graph in a call of their own.
    """
    index = np.arange(len(rows))
    plain = np.array([p is None for p in rows], dtype=bool)
    if plain.all():
        return [(index, False)]
    if not plain.any():
        return [(index, True)]
    longest = max(p.n_tokens for p in rows if p is not None)
    if image_tokens is None or longest / image_tokens <= split_above:
        return [(index, True)]
    return [(index[plain], False), (index[~plain], True)]
