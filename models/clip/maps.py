"""Dense-map arithmetic in numpy (no torch, no scipy at serving time): bilinear resizing as
torch's `F.interpolate(mode="bilinear", align_corners=False)` computes it, and a Gaussian blur as
scipy's `ndimage.gaussian_filter` computes it (mode "reflect", truncate 4)."""

from __future__ import annotations

import numpy as np


def _axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (lo, hi) and the weight of hi for each output position, align_corners=False."""
    scale = n_in / n_out
    src = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (src - lo).astype(np.float32)


def resize_bilinear(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[..., H, W] -> [..., h, w]."""
    h, w = size
    lo_y, hi_y, wy = _axis_weights(maps.shape[-2], h)
    lo_x, hi_x, wx = _axis_weights(maps.shape[-1], w)
    rows = maps[..., lo_y, :] * (1 - wy)[:, None] + maps[..., hi_y, :] * wy[:, None]
    return (rows[..., lo_x] * (1 - wx) + rows[..., hi_x] * wx).astype(np.float32)


def _gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Blur the last two axes of [..., H, W] with a separable Gaussian (scipy's reflect mode:
    the edge sample is repeated, `d c b a | a b c d | d c b a`)."""
    if sigma <= 0:
        return maps.astype(np.float32)
    k = _gaussian_kernel(sigma)
    r = len(k) // 2
    out = maps.astype(np.float64)
    for axis in (-2, -1):
        n = out.shape[axis]
        idx = np.arange(-r, n + r)
        idx = np.where(idx < 0, -idx - 1, idx)  # reflect about the edge, repeating it
        idx = np.where(idx >= n, 2 * n - idx - 1, idx)
        idx = np.mod(idx, 2 * n)  # radii wider than the image keep reflecting
        idx = np.where(idx >= n, 2 * n - idx - 1, idx)
        padded = np.take(out, idx, axis=axis)
        moved = np.moveaxis(padded, axis, -1)
        windows = np.lib.stride_tricks.sliding_window_view(moved, len(k), axis=-1)
        out = np.moveaxis(windows @ k, -1, axis)
    return out.astype(np.float32)
