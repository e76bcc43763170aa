"""Segmentation metrics as mmseg computes them (`mmseg/evaluation/metrics/iou_metric.py`):
intersections and unions summed over the whole dataset, IoU per class, mIoU the mean over
classes that occur (in the ground truth or the predictions); `ignore_index` pixels skipped."""

from __future__ import annotations

import numpy as np


def confusion(
    pred: np.ndarray, truth: np.ndarray, n_classes: int, ignore_index: int = 255
) -> np.ndarray:
    """[n_classes, n_classes] pixel counts, rows the true class, columns the predicted one."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {truth.shape} differ in size")
    keep = truth != ignore_index
    t, p = truth[keep].astype(np.int64), pred[keep].astype(np.int64)
    if t.size and (t.max() >= n_classes or t.min() < 0):
        raise ValueError(f"ground truth has class {t.max()}, outside 0..{n_classes - 1}")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """IoU per class; NaN for a class absent from both the truth and the predictions."""
    inter = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, np.nan)


def mean_iou(conf: np.ndarray) -> float:
    return float(np.nanmean(iou_per_class(conf)))
