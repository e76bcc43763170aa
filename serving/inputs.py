"""Reading request bodies within the limits: raw bytes, and JSON or multipart requests that
carry images (the task request models are the families' own)."""

from __future__ import annotations

import base64
import binascii
import functools
import json
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.types import Message

from promptserve.serving.config import LimitsConfig
from promptserve.serving.errors import InvalidInput, PayloadTooLarge

M = TypeVar("M", bound=BaseModel)
# Form fields a multipart request may carry besides its files and repeated labels (Starlette's
# default is 1000 in all): its scalar fields and a template list.
EXTRA_FORM_FIELDS = 256


@dataclass(frozen=True)
class FormFields:
    """The fields a multipart request carries besides its `images` files, read off the JSON
    request model so the two forms cannot drift: `scalars` once each; `lists` repeated (one
    value each) or sent once as a JSON list; a list field that also takes a string (`texts`,
    e.g. a preset name) takes a single plain value as that string, not as a list of one."""

    scalars: tuple[str, ...]
    lists: tuple[str, ...]
    texts: frozenset[str]


def json_types(prop: dict[str, Any]) -> list[dict[str, Any]]:
    """The non-null alternatives of a model property's JSON schema (an optional field is an
    `anyOf` with null)."""
    return [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]


@functools.cache
def form_fields(model: type[BaseModel]) -> FormFields:
    scalars, lists, texts = [], [], set()
    for name, prop in model.model_json_schema()["properties"].items():
        if name == "images":
            continue
        types = {b.get("type") for b in json_types(prop)}
        if "array" in types:
            lists.append(name)
            if "string" in types:
                texts.add(name)
        else:
            scalars.append(name)
    return FormFields(tuple(scalars), tuple(lists), frozenset(texts))


def _refuse_declared_oversize(request: Request, limits: LimitsConfig) -> None:
    """Refuse a body whose declared size is over the limit before reading any of it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise PayloadTooLarge(_too_large(int(declared), limits))


async def read_body(request: Request, limits: LimitsConfig) -> bytes:
    """The raw body, bounded by `limits.max_body_bytes` whether or not its size is declared."""
    _refuse_declared_oversize(request, limits)
    return b"".join([chunk async for chunk in _bounded(request, limits).stream()])


def _bounded(request: Request, limits: LimitsConfig) -> Request:
    """The same request, whose body raises PayloadTooLarge once more than
    `limits.max_body_bytes` have arrived: Starlette's form parser bounds each part, not the
    body, and a chunked upload declares no length to refuse up front."""
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limits.max_body_bytes:
                raise PayloadTooLarge(_too_large(received, limits))
        return message

    return Request(request.scope, receive)


def _too_large(size: int, limits: LimitsConfig) -> str:
    return (
        f"request body is {size} bytes, above the {limits.max_body_bytes}-byte limit; send fewer "
        "images per request (the SDK chunks lists) or downscale them to the model input size"
    )


async def parse_images(
    request: Request, limits: LimitsConfig, model: type[M]
) -> tuple[M, list[bytes]]:
    """JSON (`model`, base64 images) or multipart (`images` files and `model`'s other fields,
    see `FormFields`), validated by `model` either way."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        req, blobs = await _parse_multipart(request, limits, model)
    elif media_type == "application/json" or not content_type:
        req = _validate(await read_body(request, limits), model)
        blobs = [_b64(s, i) for i, s in enumerate(getattr(req, "images", []))]
    else:
        raise InvalidInput(
            f"unsupported content type {content_type[:60]!r}: send application/json or "
            "multipart/form-data"
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


async def parse_json(request: Request, limits: LimitsConfig, model: type[M]) -> M:
    """A JSON body within `limits.max_body_bytes`, validated by `model` (a 400 naming the
    first problem otherwise)."""
    return _validate(await read_body(request, limits), model)


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
    request: Request, limits: LimitsConfig, model: type[M]
) -> tuple[M, list[bytes]]:
    _refuse_declared_oversize(request, limits)
    request = _bounded(request, limits)
    try:
        form = await request.form(
            max_files=limits.max_images_per_request + 1,
            max_fields=limits.max_labels + EXTRA_FORM_FIELDS,
            max_part_size=limits.max_body_bytes,
        )
    except (HTTPException, MultiPartException) as exc:  # Starlette's own 400s
        detail = exc.detail if isinstance(exc, HTTPException) else exc.message
        raise InvalidInput(
            f"malformed multipart body ({detail}); send at most "
            f"{limits.max_images_per_request} `images` files and the request's fields"
        ) from None
    blobs = [await f.read() for f in form.getlist("images") if isinstance(f, UploadFile)]
    names = form_fields(model)
    fields: dict[str, Any] = {"images": []}
    for key in names.scalars:
        if key in form:
            fields[key] = _text(form[key], key)
    for key in names.lists:
        values: Any = [_text(v, key) for v in form.getlist(key)]
        if len(values) == 1 and values[0].startswith("["):
            values = _json_list(values[0], key)
        elif len(values) == 1 and key in names.texts:
            values = values[0]
        if values != []:
            fields[key] = values
    return _validate(json.dumps(fields).encode(), model), blobs


def _text(value: str | UploadFile, key: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"`{key}` must be a form field, not a file", param=key)
    return value


def _json_list(text: str, key: str) -> list[Any]:
    """A multipart field holding a JSON list (e.g. labels); the request model checks what
    is in it. Deep nesting exhausts the decoder's recursion: a 400 like any other bad JSON."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidInput(f"`{key}` is not a JSON list: {text[:40]!r}", param=key) from None
    if not isinstance(value, list):
        raise InvalidInput(f"`{key}` must be a JSON list", param=key)
    return value
