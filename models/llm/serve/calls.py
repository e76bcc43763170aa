"""What the LLM gateway sends its encoder: texts to represent with one registered prompt."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from promptserve.serving.store import PromptRef

Side = Literal["query", "passage"]


@dataclass(frozen=True)
class EmbedCall:
    """Represent `texts` with the prompt `ref` names, on its `side` (queries and passages have
    different prompts). `dense`/`sparse` say what comes back; `tokens` adds the sparse ids'
    token strings."""

    ref: PromptRef
    texts: tuple[str, ...]
    side: Side
    dense: bool = True
    sparse: bool = True
    tokens: bool = False


@dataclass
class Reps:
    """One text's representations, as the encoder returns them."""

    dense: np.ndarray | None  # [H] float32, L2-normalised
    indices: np.ndarray | None  # [n] int64 vocabulary ids, best first
    values: np.ndarray | None  # [n] float32 log1p(relu(logit)) weights
    tokens: int  # prompt + text tokens the model read
    truncated: bool
    token_strings: list[str] | None = field(default=None)
