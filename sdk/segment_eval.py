"""`promptserve eval segment`: mIoU and per-class IoU of a served segmentation method on a
folder of images and a folder of label masks (same file stem, `.png`, class index per pixel,
255 ignored), with the vocabulary from a labels file.

Labels file: one class per line, in class-index order; a line may list several names for its
class separated by ", " (SCLIP's `cls_*.txt` name files), the first naming the class.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from promptserve.anomaly_eval import IMAGE_SUFFIXES
from promptserve.segment_metrics import confusion, iou_per_class


def read_labels(path: str | Path) -> list[list[str]]:
    lines = [ln.strip() for ln in Path(path).read_text().splitlines()]
    groups = [[n.strip() for n in ln.split(", ") if n.strip()] for ln in lines if ln]
    if not groups:
        raise ValueError(f"{path} lists no classes")
    return groups


def pairs(images: str | Path, masks: str | Path) -> list[tuple[Path, Path]]:
    """(image, mask) pairs by file stem; raises when an image has no mask."""
    found = sorted(p for p in Path(images).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise FileNotFoundError(f"{images} holds no images")
    out = []
    for image in found:
        mask = Path(masks) / f"{image.stem}.png"
        if not mask.exists():
            raise FileNotFoundError(f"{image} has no label mask at {mask}")
        out.append((image, mask))
    return out


def evaluate(
    predict: Callable[[list[Path]], list[np.ndarray]],
    images: str | Path,
    masks: str | Path,
    n_classes: int,
    *,
    ignore_index: int = 255,
    batch: int = 4,
    progress: bool = True,
) -> np.ndarray:
    """The dataset's confusion matrix; `predict(paths) -> label maps` is the model."""
    from tqdm.auto import tqdm

    data = pairs(images, masks)
    conf = np.zeros((n_classes, n_classes), np.int64)
    with tqdm(total=len(data), desc="eval segment", disable=not progress) as bar:
        for start in range(0, len(data), batch):
            part = data[start : start + batch]
            for (_, mask), pred in zip(part, predict([p for p, _ in part]), strict=True):
                truth = np.asarray(Image.open(mask))
                conf += confusion(pred, truth, n_classes, ignore_index)
            bar.update(len(part))
    return conf


def format_table(conf: np.ndarray, names: list[str]) -> str:
    iou = iou_per_class(conf)
    lines = [f"{'class':<24} {'IoU':>6}"]
    lines += [
        f"{n:<24} {'   n/a' if np.isnan(v) else f'{100 * v:6.1f}'}"
        for n, v in zip(names, iou, strict=True)
    ]
    lines.append(f"{'mIoU':<24} {100 * float(np.nanmean(iou)):6.1f}")
    return "\n".join(lines)
