"""Image decoding and open_clip's eval-time geometry, shared by the server and the SDK.

The server preprocesses with these functions; the SDK's optional client-side downscale uses the
same `resize_shortest`, so a downscaled upload reaches the model as the same pixels (the
server's resize becomes a no-op), only with fewer bytes on the wire.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, UnidentifiedImageError

ImageInput = Union[str, Path, bytes, "Image.Image", np.ndarray]
_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
# Decompression-bomb guard: refuse images above this many pixels before decoding them.
MAX_IMAGE_PIXELS = 64_000_000


class ImageDecodeError(ValueError):
    """Bytes that are not an image PIL can decode."""


def decode_image(data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode image bytes to RGB, refusing non-images and decompression bombs."""
    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > max_pixels:
            raise ImageDecodeError(
                f"image is {img.width}x{img.height}, above the {max_pixels}-pixel limit; downscale it"
            )
        img.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError) as exc:
        # PIL names the in-memory file it read (`<_io.BytesIO object at 0x...>`): not for users
        reason = re.sub(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>", "", str(exc))
        raise ImageDecodeError(f"not a decodable image ({type(exc).__name__}: {reason})") from exc
    return img.convert("RGB") if img.mode != "RGB" else img


def resize_shortest(img: Image.Image, size: int, interpolation: str = "bicubic") -> Image.Image:
    """Resize so the shorter side is `size`, as torchvision's `Resize(int)` does on PIL images."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), _RESAMPLE[interpolation])


def center_crop(img: Image.Image, size: int) -> Image.Image:
    """torchvision `CenterCrop(size)` for an image at least `size` on each side."""
    w, h = img.size
    top, left = round((h - size) / 2.0), round((w - size) / 2.0)
    return img.crop((left, top, left + size, top + size))


def crop_uint8(img: Image.Image, *, size: int, interpolation: str = "bicubic") -> np.ndarray:
    """RGB image -> uint8 [size, size, 3]: open_clip's eval geometry, before normalisation.

    Crops travel to the encoder as uint8 (4x fewer bytes than float pixels); `normalize`
    finishes the transform there, batched.
    """
    return np.asarray(center_crop(resize_shortest(img, size, interpolation), size), dtype=np.uint8)


def normalize(crops: np.ndarray, *, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 [B, S, S, 3] -> float32 [B, 3, S, S]: ToTensor (x / 255) then Normalize."""
    scaled = crops.astype(np.float32) / np.float32(255.0)
    x = (scaled - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def image_to_bytes(
    image: ImageInput, *, downscale_to: int | None = None, interpolation: str = "bicubic"
) -> bytes:
    """Any supported input -> file bytes to upload.

    Paths and bytes go as they are unless `downscale_to` is set and the image is larger; PIL
    images and arrays are encoded as PNG (lossless, so the server sees the same pixels).
    """
    if isinstance(image, (str, Path)):
        data: bytes | None = Path(image).read_bytes()
        img = None
    elif isinstance(image, (bytes, bytearray, memoryview)):
        data, img = bytes(image), None
    elif isinstance(image, Image.Image):
        data, img = None, image
    elif isinstance(image, np.ndarray):
        data, img = None, _array_to_image(image)
    else:
        raise TypeError(
            f"unsupported image type {type(image).__name__}: pass a path, bytes, a PIL image or "
            "a uint8 numpy array (H, W, 3) / (H, W)"
        )
    if downscale_to is not None:
        if img is None:
            img = decode_image(data or b"")
        img = img.convert("RGB") if img.mode != "RGB" else img
        if min(img.size) > downscale_to:
            img = resize_shortest(img, downscale_to, interpolation)
        elif data is not None:
            return data
    if img is None:
        return data or b""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _array_to_image(arr: np.ndarray) -> Image.Image:
    if (
        arr.dtype != np.uint8
        or arr.ndim not in (2, 3)
        or (arr.ndim == 3 and arr.shape[2] not in (3, 4))
    ):
        raise TypeError(
            f"numpy images must be uint8 (H, W), (H, W, 3) or (H, W, 4); got {arr.dtype} {arr.shape}"
        )
    return Image.fromarray(arr)
