"""A small synthetic segmentation set: images of coloured regions and their class masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["background, floor, wall", "red square", "blue disc"]


def write_synthetic_segmentation(
    root: Path, n: int = 4, size: tuple[int, int] = (200, 150)
) -> Path:
    """`root/images/*.png`, `root/masks/*.png` (class per pixel, 255 on a 2-pixel border
    around each shape), `root/labels.txt` (SCLIP's one class per line, ', ' synonyms)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        img = rng.normal(120, 20, (h, w, 3))
        mask = np.zeros((h, w), np.uint8)
        x0, y0 = rng.integers(10, w // 2), rng.integers(10, h // 2)
        square = (xx >= x0) & (xx < x0 + 50) & (yy >= y0) & (yy < y0 + 50)
        cx, cy = rng.integers(w // 2, w - 30), rng.integers(h // 2, h - 30)
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 < 25**2
        img[square] = (220, 30, 30)
        img[disc] = (30, 40, 220)
        mask[square], mask[disc] = 1, 2
        edge = np.zeros_like(mask, bool)
        for shape in (square, disc):
            grown = shape.copy()
            for axis in (0, 1):
                for shift in (-2, -1, 1, 2):
                    grown |= np.roll(shape, shift, axis=axis)
            edge |= grown & ~shape
        mask[edge & (mask == 0)] = 255
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
            root / "images" / f"{i:03d}.png"
        )
        Image.fromarray(mask).save(root / "masks" / f"{i:03d}.png")
    (root / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    return root
