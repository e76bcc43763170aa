"""What every family's encoder deployment shares: the runtime's lifecycle and health, batchers
whose settings change live, and prompt registration in one trip.

A family's encoder (e.g. models/clip/serve/encoder.py) subclasses `Encoder` with its task
methods and `artifact_features`. The batch size lives here only: `reconfigure` (Serve's
`user_config`) changes it for every batcher, and `chunks` cuts work by the live value, so a
request larger than a batch is split where the limit is known.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, ParamSpec, TypeVar

import numpy as np

from promptserve.models.artifacts import ArtifactError, ArtifactMismatch, PromptArtifact
from promptserve.models.bundle import Bundle
from promptserve.serving.admission import QueueAdmission
from promptserve.serving.batching import ContinuousBatcher
from promptserve.serving.config import AppConfig
from promptserve.serving.engines.base import create_engine
from promptserve.serving.errors import (
    BackboneMismatch,
    BackendUnavailable,
    InvalidInput,
    Overloaded,
)
from promptserve.serving.metrics import metrics
from promptserve.serving.store import PromptStore, check_backbone, check_prompt_id
from promptserve.types import PromptInfo

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")


class Encoder:
    """The replica that holds the runtime. Subclasses add task methods."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.bundle = Bundle(config.bundle)
        self.engine = create_engine(config.engine.name, self.bundle, config.engine)
        self.store = PromptStore(config.prompts.store)
        self.max_batch_size = config.encoder.max_batch_size
        self.batch_wait_timeout_s = config.encoder.batch_wait_timeout_s
        self._batchers: list[Any] = []
        self.admission = QueueAdmission(
            max_images=config.encoder.queued_images_bound(),
            retry_after_s=config.limits.retry_after_s,
        )

    @staticmethod
    def sheds(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T | Overloaded]]:
        """A task method whose admission refusal is *returned* (the gateway's EncoderLink
        raises it there): raised in a replica, Serve would log a traceback per shed request,
        a flood of logs exactly when the replica is busiest."""

        @functools.wraps(method)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T | Overloaded:
            try:
                return await method(*args, **kwargs)
            except Overloaded as exc:
                return exc

        return wrapper

    @contextlib.contextmanager
    def admitted(self, n: int) -> Iterator[None]:
        """A task method's `n` images (or windows) in this replica: 503 at once beyond
        `encoder.max_queued_images` (serving/admission.py), counted until answered."""
        try:
            with self.admission.admitted(n):
                metrics().queue_length.set(self.admission.queued)
                yield
        finally:
            metrics().queue_length.set(self.admission.queued)

    def batcher(
        self, fn: Callable[[list[T]], Awaitable[list[R]]], size_fn: Callable[[T], int]
    ) -> ContinuousBatcher[T, R]:
        """A continuous batcher over `fn` that follows the live batch settings."""
        batcher: ContinuousBatcher[T, R] = ContinuousBatcher(
            fn,
            max_batch_size=self.max_batch_size,
            batch_wait_timeout_s=self.batch_wait_timeout_s,
            size_fn=size_fn,
            max_inflight=self.config.encoder.max_inflight_batches,
        )
        self.follow(batcher)
        return batcher

    def follow(self, batcher: Any) -> Any:
        """Register a batcher (anything with set_max_batch_size / set_batch_wait_timeout_s,
        such as a `@serve.batch` method) for live settings."""
        batcher.set_max_batch_size(self.max_batch_size)
        batcher.set_batch_wait_timeout_s(self.batch_wait_timeout_s)
        self._batchers.append(batcher)
        return batcher

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Batch settings come from config and can change without a restart (Serve user_config)."""
        enc = self.config.encoder
        self.max_batch_size = int(user_config.get("max_batch_size", enc.max_batch_size))
        self.batch_wait_timeout_s = float(
            user_config.get("batch_wait_timeout_s", enc.batch_wait_timeout_s)
        )
        for batcher in self._batchers:
            batcher.set_max_batch_size(self.max_batch_size)
            batcher.set_batch_wait_timeout_s(self.batch_wait_timeout_s)

    def chunks(self, n: int) -> list[slice]:
        """Slices of at most the live batch size (a batcher refuses larger items)."""
        step = self.max_batch_size
        return [slice(i, i + step) for i in range(0, n, step)]

    async def batched(
        self, batcher: Callable[[np.ndarray], Awaitable[R]], rows: np.ndarray
    ) -> list[R]:
        """`rows` through `batcher` in live-size chunks, concurrently; results in order."""
        return list(await asyncio.gather(*(batcher(rows[s]) for s in self.chunks(len(rows)))))

    def __del__(self) -> None:  # Serve calls it when the replica shuts down
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()

    # -- health ------------------------------------------------------------------------------
    def problems(self) -> Sequence[str]:
        """What keeps the runtime from serving (e.g. its Triton server is down)."""
        return list(getattr(self.engine, "problems", list)())

    async def ready(self) -> bool:
        """Raises while the runtime cannot serve, so the gateway's /readyz answers 503."""
        problems = await asyncio.to_thread(self.problems)
        if problems:
            raise BackendUnavailable("; ".join(problems))
        return True

    async def check_health(self) -> None:
        """Serve's health probe (every `health_check_period_s`): an encoder whose runtime
        cannot serve is unhealthy, so Serve replaces it and says so, not only /readyz."""
        problems = await asyncio.to_thread(self.problems)
        if problems:
            raise RuntimeError("; ".join(problems))

    # -- registration ------------------------------------------------------------------------
    def artifact_features(self, artifact: PromptArtifact) -> np.ndarray:
        """Validate an artifact against this bundle and compute what the store keeps for it
        (raise ArtifactError for an artifact that cannot run here)."""
        raise NotImplementedError

    async def register(
        self, manifest: dict[str, Any], tensors: bytes | None, prompt_id: str | None
    ) -> PromptInfo:
        """Validate, compute the features and write the store, in this replica: the gateway
        sends the artifact once and gets back only what was stored."""
        return await asyncio.to_thread(self._register, manifest, tensors, prompt_id)

    def _register(
        self, manifest: dict[str, Any], tensors: bytes | None, prompt_id: str | None
    ) -> PromptInfo:
        try:
            artifact = PromptArtifact.from_parts(manifest, tensors)
            check_backbone(self.bundle.backbone_id, artifact.manifest.backbone)
            features = self.artifact_features(artifact)
        except ArtifactMismatch as exc:
            raise BackboneMismatch(str(exc), param="manifest") from None
        except ArtifactError as exc:
            raise InvalidInput(str(exc), param="manifest") from None
        name = check_prompt_id(
            prompt_id or f"{artifact.manifest.method}-{artifact.content_id[:12]}"
        )
        return self.store.put(name, artifact, features)
