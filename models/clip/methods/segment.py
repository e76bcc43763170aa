"""Training-free open-vocabulary segmentation (MaskCLIP, SCLIP, ClearCLIP): the arithmetic
around the dense graph (`models/clip/dense_graphs.py::SegmentVisionGraph`), in numpy, as SCLIP's
`clip_segmentor.py` computes it (ClearCLIP's `clearclip_segmentor.py` is the same code).

- Resize keeping the aspect ratio so the short side is `short_side` (long side at most 2048:
  mmcv `Resize(scale=(2048, S), keep_ratio=True)`).
- `slide_inference`: crop x crop windows every `stride` pixels, the last ones snapped to the
  border; per window the cosine of each patch with each name's text feature, upsampled
  bilinearly to the window; windows averaged where they overlap; the average upsampled to the
  original size.
- `postprocess_result`: softmax over all names of logit_scale x cosine; a class scores the best
  of its names; the label is the best class; pixels whose best probability is below
  `prob_threshold` get label 0 (the papers' background: put it first). SCLIP's `area_thd` is
  not implemented.

The work is streamed over chunks of names so memory stays at chunk x H x W floats whatever the
vocabulary: the best name and a running log-sum-exp per pixel are all the softmax needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from promptserve.models.clip.maps import resize_bilinear
from promptserve.models.clip.text import l2_normalize


@dataclass(frozen=True)
class SegmentDefaults:
    """Per method, what its official code runs with."""

    logit_scale: float
    short_side: int


# MaskCLIP applies no temperature (raw cosines, argmax only); 100 is the one its refinements
# use for probabilities. SCLIP: scale 40, short side 336; ClearCLIP: scale 50, short side 448.
DEFAULTS = {
    "maskclip": SegmentDefaults(logit_scale=100.0, short_side=448),
    "sclip": SegmentDefaults(logit_scale=40.0, short_side=336),
    "clearclip": SegmentDefaults(logit_scale=50.0, short_side=448),
}
MAX_LONG_SIDE = 2048


def resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """mmcv `rescale_size` for scale (2048, short_side), keep_ratio=True."""
    scale = min(MAX_LONG_SIDE / max(height, width), short_side / min(height, width))
    return int(height * scale + 0.5), int(width * scale + 0.5)


def window_grid(length: int, crop: int, stride: int) -> int:
    """Windows along one side of `length` pixels (SCLIP's `forward_slide` grid)."""
    return max(length - crop + stride - 1, 0) // stride + 1


def window_boxes(
    height: int, width: int, crop: int, stride: int
) -> list[tuple[int, int, int, int]]:
    """(y1, y2, x1, x2) of every window, in SCLIP's `forward_slide` order and placement."""
    grids = [window_grid(n, crop, stride) for n in (height, width)]
    boxes = []
    for hi in range(grids[0]):
        for wi in range(grids[1]):
            y2, x2 = min(hi * stride + crop, height), min(wi * stride + crop, width)
            boxes.append((max(y2 - crop, 0), y2, max(x2 - crop, 0), x2))
    return boxes


def cut_windows(
    image: np.ndarray, boxes: list[tuple[int, int, int, int]], crop: int, fill: tuple[int, ...]
) -> np.ndarray:
    """uint8 [n, crop, crop, 3]. A window smaller than the crop (an image side shorter than it)
    is padded at the bottom/right with `fill`, the mean colour: SCLIP would run its smaller grid
    instead, which a fixed-size graph cannot."""
    out = np.empty((len(boxes), crop, crop, 3), np.uint8)
    for i, (y1, y2, x1, x2) in enumerate(boxes):
        out[i] = fill
        out[i, : y2 - y1, : x2 - x1] = image[y1:y2, x1:x2]
    return out


@dataclass(frozen=True)
class Segmentation:
    labels: np.ndarray  # [H0, W0] class index per pixel
    confidence: np.ndarray  # [H0, W0] probability of the winning class


def segment(
    features: np.ndarray,
    boxes: list[tuple[int, int, int, int]],
    text: np.ndarray,
    *,
    name_class: np.ndarray,
    crop: int,
    resized: tuple[int, int],
    original: tuple[int, int],
    logit_scale: float,
    prob_threshold: float = 0.0,
    chunk: int = 16,
) -> Segmentation:
    """features [windows, g*g, E] (the graph's patch_embeds for each box), text [names, E]
    normalised, name_class [names] -> the label map at the original size."""
    n_windows, patches, _ = features.shape
    grid = round(patches**0.5)
    cos = l2_normalize(features).reshape(n_windows, grid, grid, -1)
    count = np.zeros(resized, np.float32)
    for y1, y2, x1, x2 in boxes:
        count[y1:y2, x1:x2] += 1
    best = np.full(original, -np.inf, np.float32)
    best_name = np.zeros(original, np.int64)
    lse_max = np.full(original, -np.inf, np.float32)
    lse_sum = np.zeros(original, np.float32)
    for start in range(0, len(text), chunk):
        names = text[start : start + chunk]
        canvas = np.zeros((len(names), *resized), np.float32)
        for w, (y1, y2, x1, x2) in enumerate(boxes):
            window = np.einsum("hwe,ne->nhw", cos[w], names)
            window = resize_bilinear(window, (crop, crop))  # the graph's input was crop x crop
            canvas[:, y1:y2, x1:x2] += window[:, : y2 - y1, : x2 - x1]
        logits = resize_bilinear(canvas / count, original) * np.float32(logit_scale)
        top = logits.max(axis=0)
        arg = logits.argmax(axis=0) + start
        better = top > best
        best = np.where(better, top, best)
        best_name = np.where(better, arg, best_name)
        new_max = np.maximum(lse_max, top)
        lse_sum = lse_sum * np.exp(lse_max - new_max) + np.exp(logits - new_max).sum(axis=0)
        lse_max = new_max
    confidence = np.exp(best - lse_max) / lse_sum
    labels = np.asarray(name_class)[best_name]
    if prob_threshold > 0:
        labels = np.where(confidence < prob_threshold, 0, labels)
    return Segmentation(labels, confidence.astype(np.float32))


def class_scores(seg: Segmentation, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class: the fraction of pixels it labels and its mean winning probability there (0
    where it labels none)."""
    flat = seg.labels.ravel()
    counts = np.bincount(flat, minlength=n_classes).astype(np.float64)
    sums = np.bincount(flat, weights=seg.confidence.ravel(), minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / counts, 0.0)
    return (counts / flat.size).astype(np.float32), mean.astype(np.float32)
