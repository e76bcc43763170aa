"""Anomaly-detection metrics as the MVTec AD literature reports them: image AUROC, pixel AUROC
and the per-region overlap (PRO) integrated up to a 30% false-positive rate.

numpy only, except PRO's connected components (scipy.ndimage, 8-connectivity like skimage's
`measure.label` on 2-D masks): `pip install "promptserve[eval]"`.
"""

from __future__ import annotations

import numpy as np

from promptserve.optional import require


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties), as
    scikit-learn's `roc_auc_score` computes it for binary labels."""
    y = np.asarray(labels).ravel().astype(bool)
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs both normal and anomalous samples")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s), dtype=np.float64)
    # average rank of each group of equal scores (1-based)
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def pro_auc(
    masks: np.ndarray, maps: np.ndarray, *, max_step: int = 200, expect_fpr: float = 0.3
) -> float:
    """Normalised area under the PRO-vs-FPR curve for FPR < `expect_fpr`: at `max_step`
    thresholds between the maps' min and max, the mean over ground-truth regions of the
    fraction of each region above the threshold, against the false-positive rate on normal
    pixels. Follows zqhang/AnomalyCLIP `metrics.py::cal_pro_score` (after cflow-ad)."""
    ndimage = require("scipy.ndimage")
    masks = np.asarray(masks).astype(bool)
    maps = np.asarray(maps, dtype=np.float64)
    structure = np.ones((3, 3), dtype=bool)
    regions = []  # (image index, flat pixel indices) per connected ground-truth region
    for i, mask in enumerate(masks):
        labelled, n = ndimage.label(mask, structure=structure)
        flat = labelled.ravel()
        regions += [(i, np.flatnonzero(flat == k)) for k in range(1, n + 1)]
    if not regions:
        raise ValueError("PRO needs at least one anomalous region in the masks")
    normal = ~masks
    lo, hi = maps.min(), maps.max()
    delta = (hi - lo) / max_step
    pros, fprs = [], []
    for th in np.arange(lo, hi, delta):
        above = maps > th
        flat_above = above.reshape(len(maps), -1)
        pros.append(np.mean([flat_above[i, idx].mean() for i, idx in regions]))
        fprs.append(np.logical_and(normal, above).sum() / normal.sum())
    pros_a, fprs_a = np.array(pros), np.array(fprs)
    keep = fprs_a < expect_fpr
    x = fprs_a[keep]
    x = (x - x.min()) / (x.max() - x.min())
    # numpy >= 2 names it trapezoid; numpy < 2 (e.g. next to pytriton) only trapz
    trapezoid = getattr(np, "trapezoid", None) or getattr(np, "trapz")  # noqa: B009
    return float(abs(trapezoid(pros_a[keep], x)))
