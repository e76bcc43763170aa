"""The gateway core every family shares: auth, admission, observation, errors, prompt lookup
and registration, preloading. A family's gateway class is its task route modules (e.g.
models/clip/serve/classify.py) plus the common ones (serving/routes/), all subclasses of
`Gateway`, `mount`ed on an API from `create_api` (serving/api.py).

Routes are data (`Route`, a class attribute `ROUTES` on the class that implements them), so a
family's gateway class is its task mixins plus this base, and Ray Serve's class-based view
serves every route of the composed class.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from ray.serve.exceptions import BackPressureError

from promptserve.models.bundle import Bundle
from promptserve.serving.app import EncoderLink, connect_encoder
from promptserve.serving.auth import ApiKeys, Right
from promptserve.serving.config import AppConfig, LimitsConfig
from promptserve.serving.errors import Overloaded, ServeError
from promptserve.serving.metrics import metrics
from promptserve.serving.preload import preload
from promptserve.serving.store import (
    PromptRef,
    PromptStore,
    check_backbone,
    check_prompt_id,
)
from promptserve.types import (
    ModelInfo,
    PromptInfo,
)

log = logging.getLogger("promptserve.gateway")
# The metric tags of the request being observed (`observe` sets a fresh dict per request).
_TAGS: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("promptserve_tags")
T = TypeVar("T")
R = TypeVar("R", bound=BaseModel)


class Gateway:
    """What every family's gateway does before and after its task routes."""

    def __init__(
        self,
        config: AppConfig,
        encoder: Any | None,
        keys: ApiKeys,
        services: dict[str, Any] | None = None,
    ) -> None:
        """`encoder` is the encoder deployment's handle, or None for `topology: fused`, where
        this replica runs the encoder itself (serving/app.py wires both). `keys` are the API
        keys, resolved where the app was built and sent with it, never read from this
        replica's environment (a cluster's replicas may not have the user's). `services` are
        handles of the family's other deployments (`Family.services`), by name."""
        self.config = config
        self.services: dict[str, Any] = dict(services or {})
        self.bundle = Bundle(config.bundle)
        self.encoder: EncoderLink = connect_encoder(config, self.bundle, encoder)
        self.store = PromptStore(config.prompts.store)
        self._keys = keys
        if not keys.enabled:
            log.warning(config.auth.off_warning(reason="no keys were sent with the app"))
        self._inflight_images = 0
        self._labelled: set[str] = set()
        # (images in flight from here, when) the last time the encoder refused one: see shed_early
        self._encoder_full: tuple[int, float] | None = None
        self._infos: dict[str, tuple[float, PromptInfo]] = {}
        self.ready = asyncio.Event()
        self.preload_error: str | None = None
        self._preload_task = asyncio.get_event_loop().create_task(self._preload())

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Batch settings reach an in-process encoder (fused topology) through the gateway."""
        self.encoder.reconfigure(user_config)

    async def check_health(self) -> None:
        """Serve's health probe: with the fused topology, the encoder in this replica."""
        await self.encoder.check_health()

    def model_info(self) -> ModelInfo:
        """The family's description of what this server runs (GET /v1/models)."""
        raise NotImplementedError

    async def served_models(self, info: ModelInfo) -> ModelInfo:
        """`info` with what else a family lists at GET /v1/models (generation: the
        OpenAI-style list of `model` ids). Default: nothing more."""
        return info

    # -- plumbing ----------------------------------------------------------------------------
    def authorize(self, request: Request, right: Right = "read") -> None:
        """401/403 unless the request carries a key with `right` (serving/auth.py)."""
        self._keys.check(request.headers.get("authorization"), right)

    async def observe(self, route: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run a route body, mapping failures to ServeErrors and recording metrics, tagged with
        the route template, the status and (`prompt`, once resolved) the prompt id."""
        tags = _TAGS.set({})
        started, status = time.perf_counter(), 200
        try:
            return await fn()
        except ServeError as exc:
            status = exc.status
            raise
        except BackPressureError:
            status = 503
            raise Overloaded(
                "the encoder queue is full; retry later",
                retry_after_s=self.config.limits.retry_after_s,
            ) from None
        except Exception as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, ServeError):
                status = cause.status
                raise cause from None
            status = 500
            log.exception("unhandled error on %s", route)
            raise ServeError(f"internal error: {type(exc).__name__}; see the server log") from None
        finally:
            prompt_id = _TAGS.get().get("prompt_id", "")
            _TAGS.reset(tags)
            m = metrics()
            m.requests.inc(tags={"route": route, "prompt_id": prompt_id, "status": str(status)})
            m.latency.observe(time.perf_counter() - started, tags={"route": route})

    def metric_label(self) -> str:
        """The prompt id this request's metrics carry (capped, see `_label`; '' if none)."""
        return _TAGS.get().get("prompt_id", "")

    def _label(self, prompt_id: str) -> None:
        """Tag this request's metrics with `prompt_id`, a registered prompt an authorised
        request resolved (never a client's raw input: label values are series, and Ray caps
        them). At most `metrics.prompt_id_labels` distinct ids per replica, later ones `_other`;
        0 turns the label's values off."""
        cap = self.config.metrics.prompt_id_labels
        if prompt_id not in self._labelled:
            if len(self._labelled) >= cap:
                prompt_id = "_other" if cap else ""
            else:
                self._labelled.add(prompt_id)
        _TAGS.get()["prompt_id"] = prompt_id

    async def task_route(
        self,
        route: str,
        request: Request,
        parse: Callable[[Request, LimitsConfig], Awaitable[tuple[R, list[bytes]]]],
        handle: Callable[[R, list[bytes]], Awaitable[JSONResponse]],
    ) -> JSONResponse:
        """A task route's frame: authorize, parse within the limits, then `handle`, observed
        under `route`."""

        async def run() -> JSONResponse:
            self.authorize(request)
            self.shed_early()
            req, blobs = await parse(request, self.config.limits)
            return await handle(req, blobs)

        return await self.observe(route, run)

    async def prompt(self, prompt_id: str, task: str) -> tuple[PromptInfo, PromptRef]:
        """A registered prompt a request names, checked once, here: it exists, it was built for
        this backbone, and its method serves `task` on this bundle (the family's gate)."""
        info = await self._prompt_info(check_prompt_id(prompt_id))
        check_backbone(self.bundle.backbone_id, info.backbone)
        self.check_capability(task, info)
        self._label(info.prompt_id)
        return info, PromptRef(prompt_id=info.prompt_id, content_id=info.content_id)

    def check_capability(self, task: str, info: PromptInfo) -> None:
        """Raise InvalidInput if the prompt's method cannot serve `task` on this bundle."""
        raise NotImplementedError

    async def _prompt_info(self, prompt_id: str) -> PromptInfo:
        """The store's view of a prompt, cached for `prompts.info_ttl_s` so a request does not
        pay a store round trip (a network one for object stores)."""
        hit = self._infos.get(prompt_id)
        if hit is not None and time.monotonic() - hit[0] < self.config.prompts.info_ttl_s:
            return hit[1]
        info = await asyncio.to_thread(self.store.info, prompt_id)
        self._infos[prompt_id] = (time.monotonic(), info)
        return info

    @contextlib.asynccontextmanager
    async def admitted(self, n: int) -> AsyncIterator[None]:
        """Count `n` images in flight for the request's duration; 503 beyond the limit."""
        limits = self.config.limits
        if self._inflight_images + n > limits.max_inflight_images:
            raise Overloaded(
                f"{self._inflight_images} images in flight; retry after {limits.retry_after_s}s",
                retry_after_s=limits.retry_after_s,
            )
        self._inflight_images += n
        try:
            yield
        except Overloaded:  # the encoder refused: it holds all it will take from us for now
            self._encoder_full = (self._inflight_images - n, time.monotonic())
            raise
        finally:
            self._inflight_images -= n

    def shed_early(self) -> None:
        """503 before the body is read while this replica already has as many images at the
        encoder as it held when the encoder last refused one (within `retry_after_s`). A
        refused request should cost next to nothing: on a small box, decoding and sending
        requests only to have them refused took the CPU the encoder needed. As answers come
        back the count drops below that level and requests go through again, so the encoder
        is never starved by a guess."""
        if self._encoder_full is None:
            return
        level, when = self._encoder_full
        limits = self.config.limits
        if time.monotonic() - when > limits.retry_after_s:
            self._encoder_full = None
        elif level and self._inflight_images >= level:  # 0: nothing of ours to wait for
            raise Overloaded(
                f"the encoder is full ({self._inflight_images} images in flight from this "
                f"gateway); retry after {limits.retry_after_s}s",
                retry_after_s=limits.retry_after_s,
            )

    async def register(
        self, manifest: dict[str, Any], tensors: bytes | None, prompt_id: str | None
    ) -> PromptInfo:
        """One trip: the encoder validates the artifact, computes its features and writes the
        store; only the stored prompt's info comes back."""
        backbone = manifest.get("backbone")
        if isinstance(backbone, str):  # a cheap 409 before the tensors travel
            check_backbone(self.bundle.backbone_id, backbone)
        if prompt_id is not None:
            check_prompt_id(prompt_id)
        info: PromptInfo = await self.encoder.call("register", manifest, tensors, prompt_id)
        self.forget(info.prompt_id)
        return info

    def forget(self, prompt_id: str) -> None:
        """Drop this replica's cached view of a prompt (it was replaced or deleted here)."""
        self._infos.pop(prompt_id, None)

    async def _preload(self) -> None:
        """Register every artifact under the configured preload locations (idempotent); until
        that succeeds the replica is not ready, and a failure is retried."""
        delay = 1.0
        while True:
            try:
                await preload(self.config.prompts.preload, self.register)
            except Exception as exc:
                self.preload_error = f"{type(exc).__name__}: {exc}"
                log.exception("preloading prompt artifacts failed; retrying in %.0fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            self.preload_error = None
            self.ready.set()
            return
