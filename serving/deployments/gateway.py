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
import contextvars
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from ray.serve.exceptions import BackPressureError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from promptserve._version import __version__
from promptserve.models.bundle import Bundle
from promptserve.serving.app import EncoderLink, connect_encoder
from promptserve.serving.auth import ApiKeys, Right
from promptserve.serving.config import AppConfig, LimitsConfig
from promptserve.serving.errors import InvalidInput, Overloaded, ServeError
from promptserve.serving.inputs import form_fields, json_types
from promptserve.serving.metrics import metrics
from promptserve.serving.preload import preload
from promptserve.serving.store import (
    PromptRef,
    PromptStore,
    check_backbone,
    check_prompt_id,
)
from promptserve.types import (
    ErrorBody,
    ErrorDetail,
    ModelInfo,
    PromptInfo,
    RegisterPromptRequest,
)

log = logging.getLogger("promptserve.gateway")
# The metric tags of the request being observed (`observe` sets a fresh dict per request).
_TAGS: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("promptserve_tags")
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


def images_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI request body for a route that takes JSON (`model`, base64 images) or multipart
    (`images` files and `model`'s other fields, with the JSON fields' types and bounds: both
    forms are read from the one model, see serving/inputs.py's `FormFields`)."""
    props = model.model_json_schema()["properties"]
    names = form_fields(model)
    files = {
        "type": "array",
        "items": {"type": "string", "format": "binary"},
        "description": "Image files (JPEG, PNG, WebP, ...), one part each.",
    }
    fields: dict[str, Any] = {"images": files}
    for name in names.scalars:
        fields[name] = _form_scalar(props[name])
    for name in names.lists:
        fields[name] = _form_list(props[name], text=name in names.texts)
    multipart = {"type": "object", "properties": fields, "required": ["images"]}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}},
                "multipart/form-data": {"schema": multipart},
            },
        }
    }


def _documented(prop: dict[str, Any]) -> dict[str, Any]:
    """A property's description and (non-null) default."""
    return {k: prop[k] for k in ("description", "default") if prop.get(k) is not None}


def _form_scalar(prop: dict[str, Any]) -> dict[str, Any]:
    """A JSON property as one form field: its type and bounds, without the null a form cannot
    send (an absent field is the null)."""
    types = [{k: v for k, v in t.items() if k != "title"} for t in json_types(prop)]
    return {**(types[0] if len(types) == 1 else {"anyOf": types}), **_documented(prop)}


def _form_list(prop: dict[str, Any], *, text: bool) -> dict[str, Any]:
    """A JSON list property as a repeated form field (one value each; nested lists, e.g.
    synonym groups, as one value holding the whole JSON list)."""
    array = next(t for t in json_types(prop) if t.get("type") == "array")
    items = array.get("items", {})
    how = "Repeat the field, one value each, or send one value holding a JSON list."
    if text:
        how += " One value that is not a JSON list is the text form (e.g. a preset name)."
    return {
        "type": "array",
        "items": items if items.get("type") == "string" else {"type": "string"},
        "description": f"{prop.get('description', '')} {how}".strip(),
    }


def _allowed_methods(api: FastAPI, request: Request) -> list[str]:
    """Every method the routes `mount`ed on `api` serve at the request's path (Starlette's 405
    names only the first route that matched the path: GET for /v1/prompts, which takes POST
    too)."""
    path, root = request.scope["path"], request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    methods: set[str] = set()
    for regex, allowed in api.state.route_methods.values():
        if regex.match(path):
            methods |= allowed
    return sorted(methods)


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
            # FastAPI documents a 422 for operations with parameters; this server answers
            # invalid input with a 400 and the error body (`_validation_error`), as ERRORS says.
            for operation in (
                op for ops in schema.get("paths", {}).values() for op in ops.values()
            ):
                operation.get("responses", {}).pop("422", None)
            if "HTTPValidationError" not in json.dumps(schema.get("paths", {})):
                components.pop("HTTPValidationError", None)
                components.pop("ValidationError", None)
            return schema

    api = _API(title="promptserve", version=__version__, description=description)
    # path template -> (its regex, the methods `mount`ed there): the `Allow` of 405s and OPTIONS
    api.state.route_methods = {}

    @api.exception_handler(ServeError)
    async def _serve_error(_: Request, exc: ServeError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Unknown routes and methods get the same error body as everything else; OPTIONS on
        a route answers which methods it takes (`Allow`), and so does a 405."""
        headers = dict(exc.headers or {})
        message = f"{exc.detail}: see /docs for the API"
        if exc.status_code == 405:
            allowed = _allowed_methods(api, request) or sorted(
                m.strip() for m in headers.get("Allow", "").split(",") if m.strip()
            )
            if request.method == "OPTIONS":
                return Response(
                    status_code=204, headers={"Allow": ", ".join([*allowed, "OPTIONS"])}
                )
            headers["Allow"] = ", ".join(allowed)
            message = f"{request.method} is not allowed here: use {headers['Allow']} (see /docs)"
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_input")
        detail = ErrorDetail(type=kind, message=message)
        return JSONResponse(
            ErrorBody(error=detail).model_dump(), status_code=exc.status_code, headers=headers
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
            _, methods = api.state.route_methods.setdefault(
                route.path, (compile_path(route.path)[0], set())
            )
            methods.add(route.method)


class Gateway:
    """What every family's gateway does before and after its task routes."""

    def __init__(self, config: AppConfig, encoder: Any | None, keys: ApiKeys) -> None:
        """`encoder` is the encoder deployment's handle, or None for `topology: fused`, where
        this replica runs the encoder itself (serving/app.py wires both). `keys` are the API
        keys, resolved where the app was built and sent with it, never read from this
        replica's environment (a cluster's replicas may not have the user's)."""
        self.config = config
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
        elif self._inflight_images >= level:
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
