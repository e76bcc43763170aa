"""PromptReps' hybrid fusion, written from the official code for tests.

ielab/PromptReps `hybrid.py` (commit 7347423): reads the dense and the sparse TREC runs, fills
a query missing from one run with the other run's list, and calls ranx
`fuse(runs=[run1, run2], norm="min-max", method="wsum", params={"weights": [alpha, 1-alpha]})`.
ranx `normalization/min_max_norm.py::_min_max_norm`: per query, (score - min) / max(max - min,
1e-9) over that run's list. ranx `fusion/wsum.py`: per query, the sum over runs of weight x
normalised score, for every document in any run (absent = contributes nothing).
"""

from __future__ import annotations


def _norm(results: dict[str, float]) -> dict[str, float]:
    lo, hi = min(results.values()), max(results.values())
    den = max(hi - lo, 1e-9)
    return {d: (s - lo) / den for d, s in results.items()}


def fuse(dense: list[tuple[str, float]], sparse: list[tuple[str, float]], alpha: float = 0.5):
    """One query's fused list, best first (ties: document id, a deterministic order)."""
    run1, run2 = dict(dense), dict(sparse)
    if not run1:
        run1 = run2
    if not run2:
        run2 = run1
    if not run1:
        return []
    n1, n2 = _norm(run1), _norm(run2)
    fused: dict[str, float] = {}
    for weight, run in ((alpha, n1), (1 - alpha, n2)):
        for doc, score in run.items():
            fused[doc] = fused.get(doc, 0.0) + weight * score
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
