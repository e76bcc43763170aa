"""The gateway core every family shares: auth, admission, observation, errors, prompt lookup
and registration, preloading. A family's gateway class is its task route modules (e.g.
models/clip/serve/classify.py) plus the common ones (serving/routes/), all subclasses of
`Gateway`, `mount`ed on an API from `create_api`.

Routes are data (`Route`, a class attribute `ROUTES` on the class that implements them), so a
family's gateway class is its task mixins plus this base, and Ray Serve's class-based view
serves every route of the composed class.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from ray.serve.exceptions import BackPressureError
from starlette.exceptions import HTTPException as StarletteHTTPException

from promptserve._version import __version__
from promptserve.models.bundle import Bundle
from promptserve.serving.app import EncoderLink, connect_encoder
from promptserve.serving.config import AppConfig, LimitsConfig
from promptserve.serving.errors import (
    AuthenticationError,
    InvalidInput,
    Overloaded,
    PermissionDenied,
    ServeError,
)
from promptserve.serving.metrics import metrics
from promptserve.serving.preload import preload
from promptserve.serving.store import (
    PromptRef,
    PromptStore,
    check_backbone,
    check_prompt_id,
    is_prompt_id,
)
from promptserve.types import (
    ErrorBody,
    ErrorDetail,
    ModelInfo,
    PromptInfo,
    RegisterPromptRequest,
)

log = logging.getLogger("promptserve.gateway")
T = TypeVar("T")
R = TypeVar("R", bound=BaseModel)

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": why}
    for code, why in {
        400: "Invalid input",
        401: "Missing API key",
        403: "Unknown API key",
        404: "Unknown prompt",
        409: "Artifact built for another backbone",
        413: "Body too large",
        503: "Overloaded; see Retry-After",
    }.items()
}


@dataclass(frozen=True)
class Route:
    """One HTTP route: `endpoint` names the method of the class that declares it."""

    method: str
    path: str
    endpoint: str
    options: dict[str, Any] = field(default_factory=dict)


def images_body(model: str, fields: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """OpenAPI request body for a route that takes JSON (`model`) or multipart image files."""
    files = {"type": "array", "items": {"type": "string", "format": "binary"}}
    multipart = {"type": "object", "properties": {"images": files, **fields}, "required": required}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}},
                "multipart/form-data": {"schema": multipart},
            },
        }
    }


def create_api(*, description: str, bodies: Sequence[type[BaseModel]]) -> FastAPI:
    """The FastAPI app of a family's gateway, with the error handlers every family shares.
    `bodies` are the request models routes parse themselves (they read the raw body to enforce
    size limits first, and accept multipart too): the schema documents them all the same."""
    models: tuple[type[BaseModel], ...] = (*bodies, RegisterPromptRequest)

    class _API(FastAPI):
        def openapi(self) -> dict[str, Any]:
            schema = super().openapi()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                if model.__name__ not in components:
                    body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                    components.update(body.pop("$defs", {}))
                    components[model.__name__] = body
            return schema

    api = _API(title="promptserve", version=__version__, description=description)

    @api.exception_handler(ServeError)
    async def _serve_error(_: Request, exc: ServeError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Unknown routes and methods get the same error body as everything else."""
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_input")
        detail = ErrorDetail(type=kind, message=f"{exc.detail}: see /docs for the API")
        return JSONResponse(
            ErrorBody(error=detail).model_dump(), status_code=exc.status_code, headers=exc.headers
        )

    @api.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return await _serve_error(request, InvalidInput.from_validation(exc, skip=1))

    return api


def mount(api: FastAPI, cls: type) -> None:
    """Add the routes `cls` and its bases declare (`ROUTES`) to `api`, bases first."""
    for base in reversed(cls.__mro__):
        for route in vars(base).get("ROUTES", ()):
            api.add_api_route(
                route.path,
                getattr(base, route.endpoint),
                methods=[route.method],
                **route.options,
            )


class Gateway:
    """What every family's gateway does before and after its task routes."""

    def __init__(self, config: AppConfig, encoder: Any | None, keys: frozenset[str]) -> None:
        """`encoder` is the encoder deployment's handle, or None for `topology: fused`, where
        this replica runs the encoder itself (serving/app.py wires both). `keys` are the API
        keys, resolved where the app was built and sent with it, never read from this
        replica's environment (a cluster's replicas may not have the user's)."""
        self.config = config
        self.bundle = Bundle(config.bundle)
        self.encoder: EncoderLink = connect_encoder(config, self.bundle, encoder)
        self.store = PromptStore(config.prompts.store)
        self._keys = keys
        if not keys:
            log.warning(config.auth.off_warning())
        self._inflight_images = 0
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

    # -- plumbing ----------------------------------------------------------------------------
    def authorize(self, request: Request) -> None:
        if not self._keys:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError("missing API key: send `Authorization: Bearer <key>`")
        given = token.encode()  # constant-time comparison with every key
        if not any(hmac.compare_digest(given, key.encode()) for key in self._keys):
            raise PermissionDenied("API key not accepted")

    async def observe(
        self, route: str, fn: Callable[[], Awaitable[T]], tags: dict[str, str] | None = None
    ) -> T:
        """Run a route body, mapping failures to ServeErrors and recording metrics. `tags` may
        be filled in by `fn` (e.g. the prompt_id once the body is parsed)."""
        tags = tags if tags is not None else {}
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
            m = metrics()
            # only well-formed ids label a series: a client's raw input never reaches the tags
            prompt_id = tags.get("prompt_id", "")
            prompt_id = prompt_id if is_prompt_id(prompt_id) else ""
            m.requests.inc(tags={"route": route, "prompt_id": prompt_id, "status": str(status)})
            m.latency.observe(time.perf_counter() - started, tags={"route": route})

    async def task_route(
        self,
        route: str,
        request: Request,
        parse: Callable[[Request, LimitsConfig], Awaitable[tuple[R, list[bytes]]]],
        handle: Callable[[R, list[bytes]], Awaitable[JSONResponse]],
    ) -> JSONResponse:
        """A task route's frame: authorize, parse within the limits, then `handle`, observed
        under `route` (tagged with the request's prompt_id once parsed)."""
        tags: dict[str, str] = {}

        async def run() -> JSONResponse:
            self.authorize(request)
            req, blobs = await parse(request, self.config.limits)
            tags["prompt_id"] = getattr(req, "prompt_id", None) or ""
            return await handle(req, blobs)

        return await self.observe(route, run, tags)

    async def prompt(self, prompt_id: str, task: str) -> tuple[PromptInfo, PromptRef]:
        """A registered prompt a request names, checked once, here: it exists, it was built for
        this backbone, and its method serves `task` on this bundle (the family's gate)."""
        info = await self._prompt_info(check_prompt_id(prompt_id))
        check_backbone(self.bundle.backbone_id, info.backbone)
        self.check_capability(task, info)
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
        finally:
            self._inflight_images -= n

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
