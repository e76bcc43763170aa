"""The interface a generation engine implements, so the generator deployment, the routes and
the tests are the same over transformers (CPU) and vLLM (GPU)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from promptserve.models.llm.generate.params import EngineRequest, StepOutput

__all__ = ["EngineFull", "GenerationEngine"]


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

    @abstractmethod
    def stream(self, request: EngineRequest) -> AsyncIterator[StepOutput]:
        """The request's outputs; raises EngineFull when the waiting queue is full."""

    @abstractmethod
    async def close(self) -> None:
        """Stop the engine's loop and free its memory."""
