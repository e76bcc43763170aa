"""A small synthetic dataset in MVTec AD layout: textures with pasted defects and their masks.

`<root>/<category>/test/good/NNN.png`, `<root>/<category>/test/<defect>/NNN.png` and
`<root>/<category>/ground_truth/<defect>/NNN_mask.png` (0 / 255).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def _texture(rng: np.random.Generator, size: int, kind: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 0.5 + 0.25 * np.sin(2 * np.pi * (xx * (3 + kind) + yy * (2 + 2 * kind)))
    noise = rng.normal(0, 0.05, (size, size))
    gray = np.clip(base + noise, 0, 1)
    tint = np.array([0.9, 0.8, 0.7]) if kind else np.array([0.6, 0.7, 0.9])
    return (gray[..., None] * tint * 255).astype(np.uint8)


def _defect(img: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """Draw the defect on the image and return its mask."""
    size = img.width
    mask = Image.new("L", img.size, 0)
    draw, mdraw = ImageDraw.Draw(img), ImageDraw.Draw(mask)
    x, y = rng.integers(size // 8, size - size // 3, 2)
    r = int(rng.integers(size // 12, size // 6))
    if kind == "spot":
        box = [int(x), int(y), int(x + r), int(y + r)]
        draw.ellipse(box, fill=(20, 20, 20))
        mdraw.ellipse(box, fill=255)
    else:  # scratch
        line = [int(x), int(y), int(x + 2 * r), int(y + r)]
        draw.line(line, fill=(250, 250, 250), width=3)
        mdraw.line(line, fill=255, width=3)
    return mask


def write_synthetic_mvtec(
    root: Path,
    categories: dict[str, tuple[str, ...]] | None = None,
    *,
    n_good: int = 4,
    n_defect: int = 2,
    size: int = 96,
    seed: int = 0,
) -> Path:
    categories = categories or {"tile": ("spot", "scratch"), "fabric": ("spot",)}
    rng = np.random.default_rng(seed)
    for kind, (category, defects) in enumerate(categories.items()):
        test, truth = root / category / "test", root / category / "ground_truth"
        (test / "good").mkdir(parents=True, exist_ok=True)
        for i in range(n_good):
            Image.fromarray(_texture(rng, size, kind)).save(test / "good" / f"{i:03d}.png")
        for defect in defects:
            (test / defect).mkdir(parents=True, exist_ok=True)
            (truth / defect).mkdir(parents=True, exist_ok=True)
            for i in range(n_defect):
                img = Image.fromarray(_texture(rng, size, kind))
                mask = _defect(img, defect, rng)
                img.save(test / defect / f"{i:03d}.png")
                mask.save(truth / defect / f"{i:03d}_mask.png")
    return root
