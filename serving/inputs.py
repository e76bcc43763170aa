"""Reading request bodies within the limits: raw bytes, and JSON or multipart requests that
carry images (the task request models are the families' own)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request

from promptserve.serving.config import LimitsConfig
from promptserve.serving.errors import InvalidInput, PayloadTooLarge

M = TypeVar("M", bound=BaseModel)


def _refuse_declared_oversize(request: Request, limits: LimitsConfig) -> None:
    """Refuse a body whose declared size is over the limit before reading any of it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise PayloadTooLarge(_too_large(int(declared), limits))


async def read_body(request: Request, limits: LimitsConfig) -> bytes:
    """The raw body, bounded by `limits.max_body_bytes` whether or not its size is declared."""
    _refuse_declared_oversize(request, limits)
    chunks, size = [], 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise PayloadTooLarge(_too_large(size, limits))
    return b"".join(chunks)


def _too_large(size: int, limits: LimitsConfig) -> str:
    return (
        f"request body is {size} bytes, above the {limits.max_body_bytes}-byte limit; send fewer "
        "images per request (the SDK chunks lists) or downscale them to the model input size"
    )


async def parse_images(
    request: Request,
    limits: LimitsConfig,
    model: type[M],
    scalar_fields: tuple[str, ...],
    list_fields: tuple[str, ...],
) -> tuple[M, list[bytes]]:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        req, blobs = await _parse_multipart(request, limits, model, scalar_fields, list_fields)
    elif content_type.startswith("application/json") or not content_type:
        req = _validate(await read_body(request, limits), model)
        blobs = [_b64(s, i) for i, s in enumerate(getattr(req, "images", []))]
    else:
        raise InvalidInput(
            f"unsupported content type {content_type!r}: send application/json or multipart/form-data"
        )
    if not blobs:
        raise InvalidInput("`images` is empty: send at least one image", param="images")
    if len(blobs) > limits.max_images_per_request:
        raise InvalidInput(
            f"{len(blobs)} images in one request, above the limit of {limits.max_images_per_request}; "
            "split the list (the SDK does this for you)",
            param="images",
        )
    return req, blobs


def _validate(body: bytes, model: type[M]) -> M:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc) from None


def _b64(data: str, i: int) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"images[{i}] is not valid base64", param=f"images[{i}]") from None


async def _parse_multipart(
    request: Request,
    limits: LimitsConfig,
    model: type[M],
    scalar_fields: tuple[str, ...],
    list_fields: tuple[str, ...],
) -> tuple[M, list[bytes]]:
    _refuse_declared_oversize(request, limits)
    form = await request.form(
        max_files=limits.max_images_per_request + 1, max_part_size=limits.max_body_bytes
    )
    blobs = [await f.read() for f in form.getlist("images") if isinstance(f, UploadFile)]
    fields: dict[str, Any] = {"images": []}
    for key in scalar_fields:
        if key in form:
            fields[key] = form[key]
    for key in list_fields:
        values = [v for v in form.getlist(key) if isinstance(v, str)]
        if len(values) == 1 and values[0].startswith("["):
            values = json.loads(values[0])
        if values:
            fields[key] = values
    return _validate(json.dumps(fields).encode(), model), blobs
