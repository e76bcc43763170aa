"""CLIP task requests off the wire: validated fields and model-ready uint8 pixels."""

from __future__ import annotations

import numpy as np
from starlette.requests import Request

from promptserve.images import ImageDecodeError, crop_uint8, decode_image
from promptserve.models.clip.bundle import PreprocessConfig
from promptserve.serving.config import LimitsConfig
from promptserve.serving.errors import InvalidInput
from promptserve.serving.inputs import parse_images
from promptserve.types import AnomalyRequest, ClassifyRequest, SegmentRequest


async def parse_anomaly(
    request: Request, limits: LimitsConfig
) -> tuple[AnomalyRequest, list[bytes]]:
    """JSON (`AnomalyRequest`, base64 images) or multipart (`images` files + the same fields)."""
    return await parse_images(request, limits, AnomalyRequest)


async def parse_segment(
    request: Request, limits: LimitsConfig
) -> tuple[SegmentRequest, list[bytes]]:
    """JSON (`SegmentRequest`, base64 images) or multipart (`images` files + the same fields;
    there each `labels` value is one class name)."""
    req, blobs = await parse_images(request, limits, SegmentRequest)
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
        _check_texts([n for g in groups for n in g], "labels", limits)
    _check_texts(req.templates, "templates", limits)
    return req, blobs


def _undecodable(index: int, exc: ImageDecodeError) -> InvalidInput:
    """images[i] is not an image the server can decode, and the decoder's reason."""
    return InvalidInput(f"images[{index}]: {exc}", param=f"images[{index}]")


def _check_texts(texts: list[str] | str | None, param: str, limits: LimitsConfig) -> None:
    """Labels and templates are encoded per request (labels × templates sequences, each
    tokenized): their count and length are bounded, so one request's text work is too."""
    if texts is None or isinstance(texts, str):
        return
    if param == "templates" and len(texts) > limits.max_templates:
        raise InvalidInput(
            f"{len(texts)} templates, above the limit of {limits.max_templates}", param=param
        )
    longest = max((len(t) for t in texts), default=0)
    if longest > limits.max_text_chars:
        raise InvalidInput(
            f"a {param[:-1]} of {longest} characters, above the limit of "
            f"{limits.max_text_chars} (CLIP reads 77 tokens)",
            param=param,
        )


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
        raise _undecodable(index, exc) from None
    if img.width * img.height > limits.max_segment_pixels:
        raise InvalidInput(
            f"images[{index}] is {img.width}x{img.height}; /v1/segment returns a map at the "
            f"original size and takes up to {limits.max_segment_pixels / 1e6:.0f} MP: downscale it",
            param=f"images[{index}]",
        )
    h, w = resized_size(img.height, img.width, short_side)
    return np.asarray(img.resize((w, h), Image.Resampling.BILINEAR), dtype=np.uint8), (
        img.height,
        img.width,
    )


async def parse_classify(
    request: Request, limits: LimitsConfig
) -> tuple[ClassifyRequest, list[bytes]]:
    """JSON (`ClassifyRequest`, base64 images) or multipart (`images` files + the same fields)."""
    req, blobs = await parse_images(request, limits, ClassifyRequest)
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
        _check_texts(req.labels, "labels", limits)
    _check_texts(req.templates, "templates", limits)
    return req, blobs


def decode_crops(blobs: list[bytes], pre: PreprocessConfig, limits: LimitsConfig) -> np.ndarray:
    """Decode, resize and center-crop every image; uint8 [n, S, S, 3]."""
    crops = []
    for i, blob in enumerate(blobs):
        try:
            img = decode_image(blob, max_pixels=limits.max_image_pixels)
        except ImageDecodeError as exc:
            raise _undecodable(i, exc) from None
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
            raise _undecodable(i, exc) from None
        sizes.append((img.height, img.width))
        out.append(np.asarray(img.resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8))
    return np.stack(out), sizes
