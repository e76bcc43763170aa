"""IDP prompt-pool selection: which of m soft prompts the input attends to most.

IDP ("(Dynamic) Prompting might be all you need to repair Compressed LLMs", Hoang et al.,
arXiv 2310.00867, sec. 3) places all m prompts before the input in one prefill and picks the
prompt whose tokens receive the highest mean attention from the input; generation then goes
on with that prompt alone. The paper publishes no code and does not say which layer or heads
it reads, so both are part of the pool artifact (default: the last layer, every head), and
"mean attention" is read here as the mean over the chosen heads, over the input's tokens
(queries) and over the prompt's tokens (keys): a per-token mean, so prompts of different
lengths compare fairly. docs/generation.md records this choice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["pool_scores"]


def pool_scores(
    attention: np.ndarray,
    prompt_spans: Sequence[tuple[int, int]],
    input_span: tuple[int, int],
    heads: Sequence[int] | None = None,
) -> np.ndarray:
    """Scores [m] from one sequence's attention probabilities `attention` [H, T, T] (queries
    by keys, no padding) at the selection layer: for prompt k with span [start, stop), the
    mean of attention[h, i, j] over h in `heads`, i in `input_span`, j in the span."""
    probs = attention if heads is None else attention[list(heads)]
    start, stop = input_span
    rows = probs[:, start:stop, :].mean(axis=(0, 1))  # [T] mean attention each key receives
    return np.array([rows[a:b].mean() for a, b in prompt_spans], dtype=np.float64)
