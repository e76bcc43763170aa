"""Fusing a query's dense and sparse runs.

`hybrid` is PromptReps' fusion (ielab/PromptReps `hybrid.py`, which calls ranx
`fuse(norm="min-max", method="wsum", weights=[alpha, 1 - alpha])`): each run's scores are
min-max normalised over that run's own list for the query (ranx
`normalization/min_max_norm.py`: denominator max(max - min, 1e-9)), then combined as
`alpha * dense + (1 - alpha) * sparse`; a document missing from one run gets nothing from it,
and a query one run found nothing for takes the other run in its place (hybrid.py fills a
query missing from a run file with the other run's list).
It is computed here, not by an engine's ranker, so `mode=hybrid` means the paper's formula on
every engine. `rrf` (reciprocal rank fusion, Cormack et al. 2009) is offered besides.
"""

from __future__ import annotations

from collections.abc import Sequence

from promptserve.serving.index.base import Hit

EPSILON = 1e-9  # ranx min_max_norm: the denominator's floor when a run's scores are all equal


def _min_max(run: Sequence[Hit]) -> dict[str, float]:
    if not run:
        return {}
    scores = [s for _, s in run]
    low, high = min(scores), max(scores)
    return {doc: (s - low) / max(high - low, EPSILON) for doc, s in run}


def hybrid(dense: Sequence[Hit], sparse: Sequence[Hit], *, alpha: float = 0.5, k: int) -> list[Hit]:
    """The best `k` of the union of both runs by `alpha * norm(dense) + (1 - alpha) *
    norm(sparse)`; equal scores in document-id order, so the answer is deterministic."""
    if not dense or not sparse:  # hybrid.py: a query absent from one run takes the other's
        dense, sparse = (dense or sparse), (sparse or dense)
    d, s = _min_max(dense), _min_max(sparse)
    fused = {
        doc: alpha * d.get(doc, 0.0) + (1 - alpha) * s.get(doc, 0.0) for doc in d.keys() | s.keys()
    }
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def rrf(runs: Sequence[Sequence[Hit]], *, k: int, k_rrf: int = 60) -> list[Hit]:
    """Reciprocal rank fusion: sum over runs of 1 / (k_rrf + rank), rank from 1."""
    fused: dict[str, float] = {}
    for run in runs:
        for rank, (doc, _) in enumerate(run, start=1):
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (k_rrf + rank)
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
