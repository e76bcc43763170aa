"""Turning an HTTP classify request into validated fields and model-ready uint8 crops."""

from __future__ import annotations

import base64
import binascii
import json
from typing import TypeVar

import numpy as np
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request

from promptserve.images import ImageDecodeError, crop_uint8, decode_image
from promptserve.models.bundle import PreprocessConfig
from promptserve.serving.config import LimitsConfig
from promptserve.serving.errors import InvalidInput, PayloadTooLarge
from promptserve.types import AnomalyRequest, ClassifyRequest, SegmentRequest

M = TypeVar("M", ClassifyRequest, AnomalyRequest, SegmentRequest)


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


async def parse_anomaly(
    request: Request, limits: LimitsConfig
) -> tuple[AnomalyRequest, list[bytes]]:
    """JSON (`AnomalyRequest`, base64 images) or multipart (`images` files + `prompt_id`)."""
    return await _parse_images(request, limits, AnomalyRequest, ("prompt_id",), ())


async def parse_segment(
    request: Request, limits: LimitsConfig
) -> tuple[SegmentRequest, list[bytes]]:
    """JSON (`SegmentRequest`, base64 images) or multipart (`images` files + the same fields;
    there each `labels` value is one class name)."""
    req, blobs = await _parse_images(
        request, limits, SegmentRequest,
        ("prompt_id", "method", "short_side", "stride", "logit_scale", "prob_threshold",
         "return_scores"),
        ("labels", "templates"),
    )  # fmt: skip
    if req.labels is not None:
        groups = [[g] if isinstance(g, str) else g for g in req.labels]
        if not groups or any(not g or any(not n.strip() for n in g) for g in groups):
            raise InvalidInput(
                "`labels` must be a non-empty list of non-empty names (or lists of names)",
                param="labels",
            )
        if sum(map(len, groups)) > limits.max_labels:
            raise InvalidInput(
                f"{sum(map(len, groups))} label names, above the limit of {limits.max_labels}; "
                "register a prompt artifact for large vocabularies",
                param="labels",
            )
    return req, blobs


def decode_for_segment(
    blob: bytes, index: int, short_side: int, limits: LimitsConfig
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode and resize keeping the aspect ratio so the short side is `short_side` (the long
    side at most 2048), bilinear; uint8 [H, W, 3] and the original (height, width)."""
    from PIL import Image

    from promptserve.models.clip.methods.segment import resized_size

    try:
        img = decode_image(blob, max_pixels=limits.max_image_pixels)
    except ImageDecodeError as exc:
        raise InvalidInput(f"images[{index}]: {exc}", param=f"images[{index}]") from None
    if img.width * img.height > limits.max_segment_pixels:
        raise InvalidInput(
            f"images[{index}] is {img.width}x{img.height}; /v1/segment returns a map at the "
            f"original size and takes up to {limits.max_segment_pixels / 1e6:.0f} MP: downscale it",
            param=f"images[{index}]",
        )
    h, w = resized_size(img.height, img.width, short_side)
    return np.asarray(img.resize((w, h), Image.BILINEAR), dtype=np.uint8), (img.height, img.width)


async def parse_classify(
    request: Request, limits: LimitsConfig
) -> tuple[ClassifyRequest, list[bytes]]:
    """JSON (`ClassifyRequest`, base64 images) or multipart (`images` files + the same fields)."""
    req, blobs = await _parse_images(
        request, limits, ClassifyRequest, ("prompt_id", "top_k", "return_logits"),
        ("labels", "templates"),
    )  # fmt: skip
    if req.labels is not None:
        if not req.labels or any(not label.strip() for label in req.labels):
            raise InvalidInput(
                "`labels` must be a non-empty list of non-empty names", param="labels"
            )
        if len(req.labels) > limits.max_labels:
            raise InvalidInput(
                f"{len(req.labels)} labels, above the limit of {limits.max_labels}; register a prompt "
                "artifact for large vocabularies",
                param="labels",
            )
    return req, blobs


async def _parse_images(
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
        blobs = [_b64(s, i) for i, s in enumerate(req.images)]
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
    fields: dict = {"images": []}
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


def decode_crops(blobs: list[bytes], pre: PreprocessConfig, limits: LimitsConfig) -> np.ndarray:
    """Decode, resize and center-crop every image; uint8 [n, S, S, 3]."""
    crops = []
    for i, blob in enumerate(blobs):
        try:
            img = decode_image(blob, max_pixels=limits.max_image_pixels)
        except ImageDecodeError as exc:
            raise InvalidInput(f"images[{i}]: {exc}", param=f"images[{i}]") from None
        crops.append(crop_uint8(img, size=pre.size, interpolation=pre.interpolation))
    return np.stack(crops)


def decode_resized(
    blobs: list[bytes], size: int, limits: LimitsConfig
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Decode and resize every image to size x size without keeping the aspect ratio (as
    AnomalyCLIP's transform does, so a map maps back onto the whole image); uint8 [n, S, S, 3]
    and each image's original (height, width)."""
    from PIL import Image

    out, sizes = [], []
    for i, blob in enumerate(blobs):
        try:
            img = decode_image(blob, max_pixels=limits.max_image_pixels)
        except ImageDecodeError as exc:
            raise InvalidInput(f"images[{i}]: {exc}", param=f"images[{i}]") from None
        sizes.append((img.height, img.width))
        out.append(np.asarray(img.resize((size, size), Image.BICUBIC), dtype=np.uint8))
    return np.stack(out), sizes
