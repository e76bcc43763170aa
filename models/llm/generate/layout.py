"""A prompt as an engine sees it: token ids with soft-prompt spans between them.

Every soft-prompt method the generator serves reduces to this one shape. PEFT prompt tuning is
a span before everything (BOS included), a DRO safety prompt is a span inside the system turn,
an IDP pool's choice is a span before the input, and a hard prompt is just more token ids.
Engines turn a layout into input embeddings by looking up the token ids and writing each span's
rows into its own positions (`embed`). Rows whose layouts differ therefore share one batched
forward pass, as vLLM's former prompt adapters did with their placeholder positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["PromptLayout", "SoftSpan", "embed"]


@dataclass(frozen=True)
class SoftSpan:
    """Learned embeddings [n, d] that take the place of n tokens at `position`, the index in
    the layout's token ids before which they go (0 = before the first token)."""

    position: int
    embeddings: np.ndarray

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])


@dataclass(frozen=True)
class PromptLayout:
    """Token ids and the soft spans inserted among them; `tokens` is the flat sequence with a
    placeholder id at every soft position (what the cache and positions count)."""

    ids: tuple[int, ...]
    spans: tuple[SoftSpan, ...] = ()
    #: where each span starts in the flat sequence, filled in by __post_init__
    starts: tuple[int, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        starts, shift, last = [], 0, 0
        for span in self.spans:
            if not last <= span.position <= len(self.ids):
                raise ValueError("soft spans must be in order and inside the token ids")
            starts.append(span.position + shift)
            shift += len(span)
            last = span.position
        object.__setattr__(self, "starts", tuple(starts))

    def __len__(self) -> int:
        return len(self.ids) + sum(len(s) for s in self.spans)

    def tokens(self, placeholder: int) -> list[int]:
        """The flat sequence, `placeholder` at soft positions."""
        out: list[int] = []
        at = 0
        for span in self.spans:
            out.extend(self.ids[at : span.position])
            out.extend([placeholder] * len(span))
            at = span.position
        out.extend(self.ids[at:])
        return out

    def soft_positions(self) -> list[tuple[int, np.ndarray]]:
        """(start in the flat sequence, embeddings) of every span."""
        return [
            (start, span.embeddings) for start, span in zip(self.starts, self.spans, strict=True)
        ]


def embed(layouts: Sequence[PromptLayout], table: Any, *, left_pad_to: int | None = None) -> Any:
    """Input embeddings [B, T, d] (torch) of `layouts`, left-padded to `left_pad_to` (default:
    the longest) with zeros: token rows from `table` (the model's input embedding module or
    matrix), every soft span written into its own positions in one indexed copy per span.

    Pad rows are zeros and masked; their value changes no output of a causal LM.
    """
    import torch

    width = max(len(layout) for layout in layouts)
    length = left_pad_to if left_pad_to is not None else width
    if length < width:
        raise ValueError(f"left_pad_to={length} is shorter than the longest layout ({width})")
    weight = table.weight if hasattr(table, "weight") else table
    ids = torch.zeros((len(layouts), length), dtype=torch.long)
    real = torch.zeros((len(layouts), length), dtype=torch.bool)
    for row, layout in enumerate(layouts):
        pad = length - len(layout)
        ids[row, pad:] = torch.tensor(layout.tokens(0), dtype=torch.long)
        real[row, pad:] = True
    ids, real = ids.to(weight.device), real.to(weight.device)
    with torch.no_grad():
        out = torch.nn.functional.embedding(ids, weight) * real.unsqueeze(-1).to(weight.dtype)
        for row, layout in enumerate(layouts):
            pad = length - len(layout)
            for start, rows in layout.soft_positions():
                values = torch.as_tensor(np.asarray(rows), dtype=weight.dtype, device=weight.device)
                out[row, pad + start : pad + start + len(values)] = values
    return out
