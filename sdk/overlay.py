"""Maps people can look at: an anomaly heat-map or a segmentation's colours, blended over the
image (the segmentation with a legend of the classes it shows)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from promptserve.images import decode_image

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
    base = _rgb(image)
    heat = Image.fromarray(heatmap(np.asarray(anomaly_map, np.float32), vmax=vmax))
    if heat.size != base.size:
        heat = heat.resize(base.size, Image.Resampling.BILINEAR)
    return Image.blend(base, heat, alpha)


def _rgb(image: bytes | str | Path | Image.Image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    data = image if isinstance(image, bytes) else Path(image).read_bytes()
    return decode_image(data)


def palette(n: int) -> np.ndarray:
    """[n, 3] uint8 colours, distinct for neighbouring indices (golden-angle hues)."""
    hue = (np.arange(n) * 0.618033988749895) % 1.0
    sat = np.where(np.arange(n) % 2 == 0, 0.75, 0.55)
    val = np.where(np.arange(n) % 3 == 0, 0.95, 0.8)
    k = (np.array([5, 3, 1])[None, :] + hue[:, None] * 6) % 6
    rgb = val[:, None] - val[:, None] * sat[:, None] * np.clip(np.minimum(k, 4 - k), 0, 1)
    return (rgb * 255 + 0.5).astype(np.uint8)


def segment_overlay(
    image: bytes | str | Path | Image.Image,
    label_map: np.ndarray,
    labels: list[str],
    *,
    alpha: float = 0.55,
    legend: bool = True,
) -> Image.Image:
    """Colour each pixel by its class over the image, with a legend of the classes present
    (largest first) on the right.

    Example:
        >>> out = client.segment("street.jpg", labels=["road", "car", "tree", "sky"])
        >>> segment_overlay("street.jpg", out.results[0].labels(), out.labels).save("seg.png")
    """
    from PIL import ImageDraw

    base = _rgb(image)
    label_map = np.asarray(label_map)
    colours = palette(max(len(labels), int(label_map.max(initial=0)) + 1))
    painted = Image.fromarray(colours[label_map])
    if painted.size != base.size:
        painted = painted.resize(base.size, Image.Resampling.NEAREST)
    out = Image.blend(base, painted, alpha)
    if not legend:
        return out
    counts = np.bincount(label_map.ravel(), minlength=len(colours))
    present = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
    row, pad = 18, 6
    names = [labels[c] if c < len(labels) else str(c) for c in present]
    width = pad * 3 + row + max(7 * len(n) for n in names)
    canvas = Image.new(
        "RGB", (out.width + width, max(out.height, pad + row * len(present))), "white"
    )
    canvas.paste(out, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, (c, name) in enumerate(zip(present, names, strict=True)):
        y = pad + i * row
        x = out.width + pad
        draw.rectangle([x, y, x + row - 4, y + row - 4], fill=tuple(int(v) for v in colours[c]))
        draw.text(
            (x + row + pad, y + 1), f"{name} {100 * counts[c] / label_map.size:.0f}%", fill="black"
        )
    return canvas


def to_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
