"""Anomaly maps people can look at: a heat-map blended over the image."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from promptserve._images import decode_image

# A perceptual blue -> green -> yellow -> red ramp (5 stops, linearly interpolated).
_STOPS = np.array(
    [[0.0, 0.0, 0.5], [0.0, 0.4, 1.0], [0.1, 0.9, 0.3], [1.0, 0.9, 0.0], [0.9, 0.0, 0.0]],
    dtype=np.float32,
)


def heatmap(values: np.ndarray, *, vmin: float = 0.0, vmax: float | None = None) -> np.ndarray:
    """[H, W] values -> uint8 RGB [H, W, 3], `vmin` cold to `vmax` hot; `vmax` defaults to
    the map's own maximum (pass a fixed one to compare maps with each other)."""
    top = float(values.max()) if vmax is None else vmax
    t = np.clip((values - vmin) / max(top - vmin, 1e-6), 0.0, 1.0) * (len(_STOPS) - 1)
    lo = np.minimum(np.floor(t).astype(int), len(_STOPS) - 2)
    w = (t - lo)[..., None]
    rgb = _STOPS[lo] * (1 - w) + _STOPS[lo + 1] * w
    return (rgb * 255 + 0.5).astype(np.uint8)


def overlay(
    image: bytes | str | Image.Image,
    anomaly_map: np.ndarray,
    *,
    alpha: float = 0.5,
    vmax: float | None = None,
) -> Image.Image:
    """Blend `heatmap(anomaly_map)` over the image (resized to the image if needed).

    Example:
        >>> out = client.detect_anomalies(["bottle.png"], prompt_id="anomalyclip")
        >>> overlay("bottle.png", out.results[0].anomaly_map()).save("bottle-anomaly.png")
    """
    if isinstance(image, Image.Image):
        base = image.convert("RGB")
    else:
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        base = decode_image(data)
    heat = Image.fromarray(heatmap(np.asarray(anomaly_map, np.float32), vmax=vmax))
    if heat.size != base.size:
        heat = heat.resize(base.size, Image.BILINEAR)
    return Image.blend(base, heat, alpha)


def to_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
