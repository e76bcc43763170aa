"""PRO exactly as zqhang/AnomalyCLIP `metrics.py::cal_pro_score` computes it, transcribed with
scipy's 8-connected labelling in place of skimage's `measure.label` (the same components for
2-D masks) and scikit-learn's `auc`."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from sklearn.metrics import auc


def cal_pro_score(masks, amaps, max_step=200, expect_fpr=0.3):
    binary_amaps = np.zeros_like(amaps, dtype=bool)
    min_th, max_th = amaps.min(), amaps.max()
    delta = (max_th - min_th) / max_step
    pros, fprs = [], []
    for th in np.arange(min_th, max_th, delta):
        binary_amaps[amaps <= th], binary_amaps[amaps > th] = 0, 1
        pro = []
        for binary_amap, mask in zip(binary_amaps, masks, strict=True):
            labelled, n = ndimage.label(mask, structure=np.ones((3, 3)))
            for k in range(1, n + 1):
                coords = np.argwhere(labelled == k)
                tp_pixels = binary_amap[coords[:, 0], coords[:, 1]].sum()
                pro.append(tp_pixels / len(coords))
        inverse_masks = 1 - masks
        fp_pixels = np.logical_and(inverse_masks, binary_amaps).sum()
        fprs.append(fp_pixels / inverse_masks.sum())
        pros.append(np.array(pro).mean())
    pros, fprs = np.array(pros), np.array(fprs)
    idxes = fprs < expect_fpr
    fprs = fprs[idxes]
    fprs = (fprs - fprs.min()) / (fprs.max() - fprs.min())
    return auc(fprs, pros[idxes])
