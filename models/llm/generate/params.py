"""What a generation request asks of an engine, engine-neutral (both engines read these)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from promptserve.models.llm.generate.layout import PromptLayout

__all__ = ["EngineRequest", "FinishReason", "PoolChoice", "Sampling", "Selection", "StepOutput"]

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Sampling:
    """OpenAI's sampling fields as an engine applies them. `temperature == 0` is greedy;
    `seed` makes a sampled request repeatable on its own generator, whatever it batches with."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class PoolChoice:
    """An IDP prompt pool to choose from: the m prompts' embeddings and where attention is read.

    The engine lays the prompts out one after another at `position` in the request's layout
    (in pool order), runs the prefill with all of them visible to the input, scores each prompt
    with `models/llm/generate/selection.py::pool_scores`, and generates with the chosen prompt
    alone at `position`.
    """

    prompts: tuple[np.ndarray, ...]
    position: int
    layer: int
    heads: tuple[int, ...] | None = None  # None = every head


@dataclass(frozen=True)
class Selection:
    """Which pool prompt a request ran with, and every prompt's score."""

    index: int
    score: float
    scores: tuple[float, ...]


@dataclass(frozen=True)
class EngineRequest:
    layout: PromptLayout
    sampling: Sampling
    pool: PoolChoice | None = None
    request_id: str = ""


@dataclass
class StepOutput:
    """New tokens of one request since its previous output; `finish` on its last one. The
    first output of a pool request carries its `selection`."""

    token_ids: list[int] = field(default_factory=list)
    finish: FinishReason | None = None
    selection: Selection | None = None
    prompt_tokens: int = 0
