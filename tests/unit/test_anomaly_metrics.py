"""Anomaly metrics against direct computations: scikit-learn's `roc_auc_score`, and PRO as
zqhang/AnomalyCLIP `metrics.py::cal_pro_score` computes it (tests/anomaly_metrics_reference.py)."""

from __future__ import annotations

import numpy as np
import pytest
from anomaly_metrics_reference import cal_pro_score
from sklearn.metrics import roc_auc_score

from promptserve.anomaly_metrics import auroc, pro_auc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(300) < 0.3
    scores = np.round(rng.random(300) + labels * 0.4, 1)  # rounded: many ties
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auroc_needs_both_classes():
    with pytest.raises(ValueError, match="both"):
        auroc(np.zeros(4), np.arange(4))


def _synthetic(seed: int):
    """Masks with several defects (one diagonal-only connected, one touching an edge) and maps
    that find them imperfectly."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((4, 48, 48), np.uint8)
    masks[0, 5:12, 5:15] = 1
    masks[0, 30, 30] = masks[0, 31, 31] = masks[0, 32, 32] = 1  # 8-connected diagonal
    masks[1, 40:48, 0:6] = 1
    masks[3, 20:28, 10:30] = 1
    maps = rng.random(masks.shape) * 0.6 + masks * rng.random(masks.shape) * 0.8
    return masks, maps.astype(np.float32)


@pytest.mark.parametrize("seed", [0, 3])
def test_pro_matches_the_official_computation(seed):
    masks, maps = _synthetic(seed)
    assert pro_auc(masks, maps) == pytest.approx(cal_pro_score(masks, maps), abs=1e-9)
    perfect = masks.astype(np.float32)
    assert pro_auc(masks, perfect + 0.01 * maps) > pro_auc(masks, maps)


def test_pro_needs_a_region():
    with pytest.raises(ValueError, match="region"):
        pro_auc(np.zeros((1, 4, 4)), np.random.default_rng(0).random((1, 4, 4)))
