"""The interface a generation engine implements, so the generator deployment, the routes and
the tests are the same over transformers (CPU) and vLLM (GPU)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence

from promptserve.models.llm.generate.params import EngineRequest, StepOutput

__all__ = ["EngineFull", "GenerationEngine", "eos_ids"]


def eos_ids(value: int | Sequence[int] | None) -> tuple[int, ...]:
    """A generation config's `eos_token_id` (one id, a list, or none) as a tuple."""
    if value is None:
        return ()
    return (int(value),) if isinstance(value, int) else tuple(int(i) for i in value)


class EngineFull(RuntimeError):
    """The engine's waiting queue is at its limit: the caller answers 503 with Retry-After."""


class GenerationEngine(ABC):
    """Runs requests batched together and streams each one's tokens.

    `stream` yields a request's new tokens as they are made; the last output has `finish` set.
    Closing the iterator early (a client that went away) frees the request's slot and cache
    at the engine's next step: engines never keep generating for nobody.
    """

    #: the model's context length: prompt plus generated tokens never exceed it
    max_positions: int
    #: the backbone's hidden size, the width a soft prompt must have
    hidden_size: int
    #: decoder layers (an IDP pool's selection layer is one of them)
    num_layers: int
    #: the ids the checkpoint's generation config stops on (a chat model lists its end of
    #: turn there, as Llama-3 does)
    eos_token_ids: tuple[int, ...]

    @property
    @abstractmethod
    def active(self) -> int:
        """Requests being decoded now (metrics and tests: a dropped client frees its row)."""

    @abstractmethod
    async def check_health(self) -> None:
        """Raise if the engine can no longer serve (Serve then replaces the replica)."""

    @abstractmethod
    def stream(self, request: EngineRequest) -> AsyncIterator[StepOutput]:
        """The request's outputs; raises EngineFull when the waiting queue is full."""

    @abstractmethod
    async def close(self) -> None:
        """Stop the engine's loop and free its memory."""
