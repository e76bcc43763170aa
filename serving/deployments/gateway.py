"""The HTTP ingress: auth, validation, image decode and preprocessing, prompt registry.

It keeps the encoder deployment busy with model-ready uint8 crops and turns every failure into
a typed JSON error (`ErrorBody`) with a status a client can act on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import fsspec
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from ray import serve
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from promptserve import __version__
from promptserve.models.artifacts import MANIFEST_FILE, TENSORS_FILE
from promptserve.models.bundle import Bundle, SegmentGraphSpec
from promptserve.models.clip.methods.segment import DEFAULTS as SEGMENT_DEFAULTS
from promptserve.models.clip.methods.segment import cut_windows, window_boxes
from promptserve.models.clip.templates import resolve_templates
from promptserve.serving.config import AppConfig, LimitsConfig
from promptserve.serving.deployments.encoder import (
    AnomalyCall,
    ClassifyCall,
    EncoderDeployment,
    SegmentCall,
)
from promptserve.serving.errors import (
    AuthenticationError,
    BackboneMismatch,
    InvalidInput,
    Overloaded,
    PermissionDenied,
    ServeError,
)
from promptserve.serving.inputs import (
    decode_crops,
    decode_for_segment,
    decode_resized,
    parse_anomaly,
    parse_classify,
    parse_segment,
    read_body,
)
from promptserve.serving.metrics import metrics
from promptserve.serving.store import PromptStore, check_prompt_id
from promptserve.types import (
    AnomalyRequest,
    AnomalyResponse,
    ClassifyRequest,
    ClassifyResponse,
    ErrorBody,
    ErrorDetail,
    ImageGeometry,
    ModelInfo,
    PromptInfo,
    PromptList,
    RegisterPromptRequest,
    SegmentRequest,
    SegmentResponse,
)

log = logging.getLogger("promptserve.gateway")
T = TypeVar("T")
_ERRORS: dict[int | str, dict[str, Any]] = {
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


def _images_body(model: str, fields: dict[str, Any], required: list[str]) -> dict[str, Any]:
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


_CLASSIFY_BODY = _images_body(
    "ClassifyRequest",
    {
        "prompt_id": {"type": "string"},
        "labels": {"type": "array", "items": {"type": "string"}},
        "top_k": {"type": "integer"},
        "return_logits": {"type": "boolean"},
    },
    ["images"],
)
_SEGMENT_BODY = _images_body(
    "SegmentRequest",
    {
        "labels": {"type": "array", "items": {"type": "string"}},
        "prompt_id": {"type": "string"},
        "templates": {"type": "array", "items": {"type": "string"}},
        "method": {"type": "string", "enum": ["maskclip", "sclip", "clearclip"]},
        "short_side": {"type": "integer"},
        "stride": {"type": "integer"},
        "logit_scale": {"type": "number"},
        "prob_threshold": {"type": "number"},
        "return_scores": {"type": "boolean"},
    },
    ["images"],
)
_ANOMALY_BODY = _images_body(
    "AnomalyRequest",
    {"prompt_id": {"type": "string"}, "object_name": {"type": "string"}},
    ["images"],
)


class _API(FastAPI):
    """FastAPI whose schema also documents the bodies that routes parse themselves (they read
    the raw request to enforce size limits before parsing and to accept multipart too)."""

    def openapi(self) -> dict[str, Any]:
        schema = super().openapi()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (ClassifyRequest, AnomalyRequest, SegmentRequest, RegisterPromptRequest):
            if model.__name__ not in components:
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(body.pop("$defs", {}))
                components[model.__name__] = body
        return schema


api = _API(
    title="promptserve",
    version=__version__,
    description="Prompt-adapted CLIP models behind one batched backbone.",
)


@api.exception_handler(ServeError)
async def _serve_error(_: Request, exc: ServeError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


@api.exception_handler(StarletteHTTPException)
async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Unknown routes and methods get the same error body as everything else."""
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_input")
    body = ErrorBody(error=ErrorDetail(type=kind, message=f"{exc.detail}: see /docs for the API"))
    return JSONResponse(body.model_dump(), status_code=exc.status_code, headers=exc.headers)


@api.exception_handler(RequestValidationError)
async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    return await _serve_error(_, InvalidInput.from_validation(exc, skip=1))


class Gateway:
    def __init__(self, config: AppConfig, encoder: DeploymentHandle | None) -> None:
        """`encoder` is the encoder deployment's handle, or None for `topology: fused`, where
        this replica runs the encoder itself."""
        self.config = config
        self.encoder = encoder if encoder is not None else _InProcess(EncoderDeployment(config))
        self.bundle = Bundle(config.bundle)
        self.store = PromptStore(config.prompts.store)
        self._keys = config.auth.keys()
        self._inflight_images = 0
        # segmentation pads windows past an image's edge with the mean colour (0 once normalised)
        self._fill = tuple(round(255 * m) for m in self.bundle.manifest.preprocess.mean)
        self._infos: dict[str, tuple[float, PromptInfo]] = {}
        self._ready = asyncio.Event()
        self._preload_task = asyncio.get_event_loop().create_task(self._preload())

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Batch settings reach an in-process encoder (fused topology) through the gateway."""
        if isinstance(self.encoder, _InProcess):
            self.encoder.target.reconfigure(user_config)

    # -- plumbing ----------------------------------------------------------------------------
    def _authorize(self, request: Request) -> None:
        if not self._keys:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError("missing API key: send `Authorization: Bearer <key>`")
        if token not in self._keys:
            raise PermissionDenied("API key not accepted")

    async def _observe(
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
            m.requests.inc(
                tags={"route": route, "prompt_id": tags.get("prompt_id", ""), "status": str(status)}
            )
            m.latency.observe(time.perf_counter() - started, tags={"route": route})

    async def _prompt_info(self, prompt_id: str) -> PromptInfo:
        """The store's view of a prompt, cached for `prompts.info_ttl_s` so a request does not
        pay a store round trip (a network one for object stores)."""
        hit = self._infos.get(prompt_id)
        if hit is not None and time.monotonic() - hit[0] < self.config.prompts.info_ttl_s:
            return hit[1]
        info = await asyncio.to_thread(self.store.info, prompt_id)
        self._infos[prompt_id] = (time.monotonic(), info)
        return info

    def _check_backbone(self, backbone: str) -> None:
        if backbone != self.bundle.backbone_id:
            raise BackboneMismatch(
                f"the artifact was built for backbone {backbone!r} but this server runs "
                f"{self.bundle.backbone_id!r}; re-import it with --backbone matching the server",
                param="backbone",
            )

    # -- health ------------------------------------------------------------------------------
    @api.get("/healthz", include_in_schema=False)
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @api.get("/readyz", include_in_schema=False)
    async def readyz(self) -> Response:
        if not self._ready.is_set():
            return JSONResponse(
                {"status": "starting"}, status_code=503, headers={"Retry-After": "1"}
            )
        try:
            await asyncio.wait_for(self.encoder.ready.remote(), timeout=5)
        except Exception:  # noqa: BLE001 - whatever the failure, the answer is "not ready"
            return JSONResponse(
                {"status": "encoder unavailable"}, status_code=503, headers={"Retry-After": "1"}
            )
        return JSONResponse({"status": "ready"})

    # -- models ------------------------------------------------------------------------------
    @api.get("/v1/models", response_model=ModelInfo, responses=_ERRORS)
    async def models(self, request: Request) -> ModelInfo:
        self._authorize(request)
        m, pre = self.bundle.manifest, self.bundle.manifest.preprocess
        return ModelInfo(
            backbone=m.backbone_id,
            embed_dim=m.embed_dim,
            engine=self.config.engine.name,
            image=ImageGeometry(
                size=pre.size, interpolation=pre.interpolation, mean=pre.mean, std=pre.std
            ),
            max_images_per_request=self.config.limits.max_images_per_request,
            max_body_bytes=self.config.limits.max_body_bytes,
            tasks=[
                "classify",
                *(["anomaly"] if m.anomaly or m.winclip else []),
                *(["segment"] if m.segment else []),
            ],
            segment_methods=list(m.segment),
            anomaly_methods=[
                method
                for method, spec in (("anomalyclip", m.anomaly), ("winclip", m.winclip))
                if spec is not None
            ],
        )

    # -- classify ----------------------------------------------------------------------------
    @api.post(
        "/v1/classify",
        response_model=ClassifyResponse,
        responses=_ERRORS,
        openapi_extra=_CLASSIFY_BODY,
    )
    async def classify(self, request: Request) -> JSONResponse:
        tags: dict[str, str] = {}

        async def run() -> JSONResponse:
            self._authorize(request)
            req, blobs = await parse_classify(request, self.config.limits)
            tags["prompt_id"] = req.prompt_id or ""
            return await self._classify(req, blobs)

        return await self._observe("classify", run, tags)

    async def _classify(self, req: ClassifyRequest, blobs: list[bytes]) -> JSONResponse:
        limits = self.config.limits
        n = len(blobs)
        async with self._admitted(n):
            if req.prompt_id is not None:
                info = await self._prompt_info(check_prompt_id(req.prompt_id))
                self._check_backbone(info.backbone)
                _check_task(info, "classify")
                head = {"prompt_id": info.prompt_id, "content_id": info.content_id}
                labels = info.classnames
            else:
                try:
                    templates = resolve_templates(req.templates)
                except ValueError as exc:
                    raise InvalidInput(str(exc), param="templates") from None
                head = {"labels": tuple(req.labels or ()), "templates": templates}
                labels = list(req.labels or ())
            crops = await asyncio.to_thread(
                decode_crops, blobs, self.bundle.manifest.preprocess, limits
            )
            parts = await asyncio.gather(
                *(
                    self.encoder.classify.remote(
                        ClassifyCall(
                            crops=crops[chunk],
                            top_k=req.top_k,
                            return_logits=req.return_logits,
                            **head,
                        )
                    )
                    for chunk in self._chunks(n)
                )
            )
        results = _numbered(parts)
        metrics().images.inc(n)
        body = ClassifyResponse(
            prompt_id=req.prompt_id,
            backbone=self.bundle.backbone_id,
            labels=labels,
            results=results,
        )
        return JSONResponse(body.model_dump(mode="json"), headers=_batch_header(parts))

    # -- anomaly -----------------------------------------------------------------------------
    @api.post(
        "/v1/anomaly",
        response_model=AnomalyResponse,
        responses=_ERRORS,
        openapi_extra=_ANOMALY_BODY,
    )
    async def anomaly(self, request: Request) -> JSONResponse:
        tags: dict[str, str] = {}

        async def run() -> JSONResponse:
            self._authorize(request)
            req, blobs = await parse_anomaly(request, self.config.limits)
            tags["prompt_id"] = req.prompt_id or ""
            return await self._anomaly(req, blobs)

        return await self._observe("anomaly", run, tags)

    async def _anomaly(self, req: AnomalyRequest, blobs: list[bytes]) -> JSONResponse:
        head, size = await self._anomaly_head(req)
        n = len(blobs)
        async with self._admitted(n):
            crops, sizes = await asyncio.to_thread(decode_resized, blobs, size, self.config.limits)
            parts = await asyncio.gather(
                *(
                    self.encoder.detect_anomalies.remote(
                        AnomalyCall(crops=crops[chunk], sizes=tuple(sizes[chunk]), **head)
                    )
                    for chunk in self._chunks(n)
                )
            )
        metrics().images.inc(n)
        body = AnomalyResponse(
            prompt_id=head.get("prompt_id"),
            object_name=head.get("object_name"),
            method=req.method,
            backbone=self.bundle.backbone_id,
            results=_numbered(parts),
        )
        return JSONResponse(body.model_dump(mode="json"), headers=_batch_header(parts))

    async def _anomaly_head(self, req: AnomalyRequest) -> tuple[dict[str, Any], int]:
        """The encoder's head fields and the input size of the dense graph the head reads."""
        m = self.bundle.manifest
        if req.object_name is not None:
            if m.winclip is None:
                raise InvalidInput(
                    "this server's bundle has no WinCLIP window graph; export it with "
                    "--winclip-scales",
                    param="object_name",
                )
            return {"object_name": req.object_name.strip()}, m.preprocess.size
        info = await self._prompt_info(check_prompt_id(req.prompt_id or ""))
        self._check_backbone(info.backbone)
        _check_task(info, "anomaly")
        if m.anomaly is None:
            raise InvalidInput(
                "this server's bundle has no anomaly graph; export it with --anomaly-size",
                param="prompt_id",
            )
        return {"prompt_id": info.prompt_id, "content_id": info.content_id}, m.anomaly.image_size

    # -- segment -----------------------------------------------------------------------------
    @api.post(
        "/v1/segment",
        response_model=SegmentResponse,
        responses=_ERRORS,
        openapi_extra=_SEGMENT_BODY,
    )
    async def segment(self, request: Request) -> JSONResponse:
        tags: dict[str, str] = {}

        async def run() -> JSONResponse:
            self._authorize(request)
            req, blobs = await parse_segment(request, self.config.limits)
            tags["prompt_id"] = req.prompt_id or ""
            return await self._segment(req, blobs)

        return await self._observe("segment", run, tags)

    async def _segment(self, req: SegmentRequest, blobs: list[bytes]) -> JSONResponse:
        m, limits = self.bundle.manifest, self.config.limits
        if not m.segment:
            raise InvalidInput(
                "this server's bundle has no segmentation graph; export it with --segment sclip"
            )
        method = req.method or next(iter(m.segment))
        spec = m.segment.get(method)
        if spec is None:
            raise InvalidInput(
                f"this server segments with {sorted(m.segment)}, not {method}; export the "
                f"bundle with --segment {method} to add it",
                param="method",
            )
        head, labels = await self._segment_vocabulary(req)
        defaults = SEGMENT_DEFAULTS[method]
        short_side = req.short_side or defaults.short_side
        stride = req.stride or spec.image_size // 2
        if stride > spec.image_size:
            raise InvalidInput(
                f"stride {stride} leaves gaps between {spec.image_size}-pixel windows",
                param="stride",
            )
        options = {
            "method": method,
            "logit_scale": req.logit_scale or defaults.logit_scale,
            "prob_threshold": req.prob_threshold,
            "return_scores": req.return_scores,
            **head,
        }
        n = len(blobs)
        async with self._admitted(n):
            calls = await asyncio.to_thread(
                _segment_calls, blobs, spec, short_side, stride, limits, options, self._fill
            )
            parts = await asyncio.gather(*(self.encoder.segment.remote(c) for c in calls))
        metrics().images.inc(n)
        results = []
        for i, part in enumerate(parts):
            result = {"index": i, **part["result"]}
            if result.get("scores") is not None:
                result["scores"] = [{**s, "label": labels[s["index"]]} for s in result["scores"]]
            results.append(result)
        body = SegmentResponse(
            prompt_id=req.prompt_id,
            method=method,
            backbone=self.bundle.backbone_id,
            labels=labels,
            results=results,
        )
        header = ",".join(str(b) for p in parts for b in p["batch_images"])
        return JSONResponse(body.model_dump(mode="json"), headers={_BATCH_HEADER: header})

    async def _segment_vocabulary(self, req: SegmentRequest) -> tuple[dict[str, Any], list[str]]:
        """The encoder's vocabulary fields and the class names a label map indexes."""
        if req.prompt_id is not None:
            info = await self._prompt_info(check_prompt_id(req.prompt_id))
            self._check_backbone(info.backbone)
            _check_task(info, "classify")  # text-prompt artifacts are classification prompts
            return {"prompt_id": info.prompt_id, "content_id": info.content_id}, info.classnames
        templates = req.templates or "imagenet80"
        if isinstance(templates, list) and len(templates) == 1 and "{}" not in templates[0]:
            templates = templates[0]  # a preset name sent as a multipart field
        try:
            resolved = resolve_templates(templates)
        except ValueError as exc:
            raise InvalidInput(str(exc), param="templates") from None
        groups = tuple(
            (g.strip(),) if isinstance(g, str) else tuple(n.strip() for n in g)
            for g in req.labels or ()
        )
        return {"names": groups, "templates": resolved}, [g[0] for g in groups]

    @contextlib.asynccontextmanager
    async def _admitted(self, n: int) -> AsyncIterator[None]:
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

    def _chunks(self, n: int) -> list[slice]:
        """Encoder calls of at most max_batch_size images (Serve refuses larger batch items)."""
        step = self.config.encoder.max_batch_size
        return [slice(i, i + step) for i in range(0, n, step)]

    # -- prompt registry ---------------------------------------------------------------------
    @api.get("/v1/prompts", response_model=PromptList, responses=_ERRORS)
    async def list_prompts(self, request: Request) -> PromptList:
        async def run() -> PromptList:
            self._authorize(request)
            return PromptList(data=await asyncio.to_thread(self.store.list))

        return await self._observe("prompts.list", run)

    @api.get("/v1/prompts/{prompt_id}", response_model=PromptInfo, responses=_ERRORS)
    async def get_prompt(self, prompt_id: str, request: Request) -> PromptInfo:
        async def run() -> PromptInfo:
            self._authorize(request)
            return await asyncio.to_thread(self.store.info, check_prompt_id(prompt_id))

        return await self._observe("prompts.get", run, {"prompt_id": prompt_id})

    @api.delete("/v1/prompts/{prompt_id}", status_code=204, responses=_ERRORS)
    async def delete_prompt(self, prompt_id: str, request: Request) -> Response:
        async def run() -> Response:
            self._authorize(request)
            await asyncio.to_thread(self.store.delete, check_prompt_id(prompt_id))
            self._infos.pop(prompt_id, None)
            return Response(status_code=204)

        return await self._observe("prompts.delete", run, {"prompt_id": prompt_id})

    @api.post(
        "/v1/prompts",
        status_code=201,
        response_model=PromptInfo,
        responses=_ERRORS,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/RegisterPromptRequest"}
                    }
                },
            }
        },
    )
    async def register_prompt(self, request: Request) -> JSONResponse:
        async def run() -> JSONResponse:
            self._authorize(request)
            body = await read_body(request, self.config.limits)
            try:
                req = RegisterPromptRequest.model_validate_json(body)
            except ValidationError as exc:
                raise InvalidInput.from_validation(
                    exc, prefix="invalid registration body: "
                ) from None
            try:
                tensors = base64.b64decode(req.tensors, validate=True) if req.tensors else None
            except (binascii.Error, ValueError):
                raise InvalidInput("`tensors` is not valid base64", param="tensors") from None
            info = await self._register(req.manifest, tensors, req.prompt_id)
            return JSONResponse(info.model_dump(mode="json"), status_code=201)

        return await self._observe("prompts.register", run)

    async def _register(
        self, manifest: dict, tensors: bytes | None, prompt_id: str | None
    ) -> PromptInfo:
        backbone = manifest.get("backbone") if isinstance(manifest, dict) else None
        if isinstance(backbone, str):
            self._check_backbone(backbone)
        features, artifact = await self.encoder.class_features.remote(manifest, tensors)
        prompt_id = check_prompt_id(
            prompt_id or f"{artifact.manifest.method}-{artifact.content_id[:12]}"
        )
        self._infos.pop(prompt_id, None)
        return await asyncio.to_thread(self.store.put, prompt_id, artifact, features)

    async def _preload(self) -> None:
        """Register every artifact under the configured preload locations (idempotent)."""
        try:
            for url in self.config.prompts.preload:
                fs, root = fsspec.core.url_to_fs(url)
                dirs = (
                    [root]
                    if fs.exists(f"{root}/{MANIFEST_FILE}")
                    else sorted(
                        d for d in fs.ls(root, detail=False) if fs.exists(f"{d}/{MANIFEST_FILE}")
                    )
                )
                for d in dirs:
                    await self._preload_one(fs, d)
        except Exception:
            log.exception("preloading prompt artifacts failed")
        finally:
            self._ready.set()

    async def _preload_one(self, fs, directory: str) -> None:
        name = directory.rstrip("/").rsplit("/", 1)[-1]
        manifest = fs.cat(f"{directory}/{MANIFEST_FILE}").decode()
        tensors = (
            fs.cat(f"{directory}/{TENSORS_FILE}")
            if fs.exists(f"{directory}/{TENSORS_FILE}")
            else None
        )

        try:
            info = await self._register(json.loads(manifest), tensors, name)
            log.info("preloaded prompt %s (%s)", info.prompt_id, info.content_id[:12])
        except ServeError as exc:
            log.error("skipping artifact %s: %s", directory, exc.message)


def _numbered(parts: list[dict]) -> list[dict]:
    """The chunks' results in request order, `index` counted over the whole request."""
    results = [r for part in parts for r in part["results"]]
    for i, r in enumerate(results):
        r["index"] = i
    return results


_BATCH_HEADER = "x-promptserve-batch-images"


def _batch_header(parts: list[dict]) -> dict[str, str]:
    """How full the vision batches were: cheap to send, the first thing to look at when tuning."""
    return {_BATCH_HEADER: ",".join(str(p["batch_images"]) for p in parts)}


def _segment_calls(
    blobs: list[bytes],
    spec: SegmentGraphSpec,
    short_side: int,
    stride: int,
    limits: LimitsConfig,
    options: dict[str, Any],
    fill: tuple[int, int, int],
) -> list[SegmentCall]:
    """Per image: resized, cut into the graph's windows (SCLIP's placement)."""
    calls = []
    for i, blob in enumerate(blobs):
        image, original = decode_for_segment(blob, i, short_side, limits)
        boxes = window_boxes(image.shape[0], image.shape[1], spec.image_size, stride)
        windows = cut_windows(image, boxes, spec.image_size, fill)
        calls.append(
            SegmentCall(
                windows=windows,
                boxes=tuple(boxes),
                resized=(image.shape[0], image.shape[1]),
                original=original,
                **options,
            )
        )
    return calls


def _check_task(info: PromptInfo, route: str) -> None:
    if info.task != route:
        raise InvalidInput(
            f"prompt {info.prompt_id!r} is a {info.task} prompt; send it to /v1/{info.task}",
            param="prompt_id",
        )


class _InProcess:
    """Gives an in-process object the `handle.method.remote(...)` calling shape of a Serve
    handle, so the gateway code is the same for both topologies."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.target, name)

        class _Method:
            @staticmethod
            async def remote(*args: Any, **kwargs: Any) -> Any:
                result = method(*args, **kwargs)
                return await result if asyncio.iscoroutine(result) else result

        return _Method


# Applied at import time (not in build_app) so replicas, which import this module afresh,
# see the same class-based routes as the driver that pickled the app.
GatewayIngress = serve.ingress(api)(Gateway)
