"""Fusing a query's dense and sparse runs into one ranking.

`hybrid` is PromptReps' fusion as the official search runs it: ielab/PromptReps
`search.py::main` (commit 429c3ac) builds each run per query with `get_run_dict` (the top-depth
documents with their scores, and the run's min and max score; both 0 for an empty run) and
calls `hybrid.py::fuse(runs=[dense_run, sparse_run], weights=[alpha, 1 - alpha])`, alpha 0.5
by default (`arguments.py`). `fuse` gives every document of either run

    score = sum over runs holding it of weight * (s - min) / max(max - min, 1e-9)

(a run without the document adds 0), and `hybrid.py::write_trec_run` ranks by that score with
Python's stable sort, so equal scores keep the order `fuse` met the documents in: the dense
run's documents in its order, then those only the sparse run found, in its order.

It is computed here rather than by an engine's own fusion (Qdrant's and Milvus's are RRF or
differently normalised), so `mode=hybrid` means the paper's formula on every engine. `rrf`,
reciprocal rank fusion (Cormack, Clarke and Buettcher, SIGIR 2009), is offered besides.
"""

from __future__ import annotations

from collections.abc import Sequence

from promptserve.serving.index.base import Hit

EPSILON = 1e-9  # hybrid.py::fuse: the denominator's floor when a run's scores are all equal


def _normalised(run: Sequence[Hit]) -> dict[str, float]:
    """Min-max over the run's own list (search.py::get_run_dict's min_score, max_score)."""
    if not run:
        return {}
    scores = [float(s) for _, s in run]
    low, high = min(scores), max(scores)
    denominator = max(high - low, EPSILON)
    return {doc: (float(score) - low) / denominator for doc, score in run}


def hybrid(dense: Sequence[Hit], sparse: Sequence[Hit], *, alpha: float = 0.5, k: int) -> list[Hit]:
    """The best `k` documents of either run by `alpha * norm(dense) + (1 - alpha) *
    norm(sparse)`, best first, with the official order among equal scores (module doc). Each
    run should be the engine's top-depth list for the query, as the official runs are."""
    runs = [(alpha, _normalised(dense)), (1 - alpha, _normalised(sparse))]
    fused: dict[str, float] = {}
    for _, run in runs:
        for doc in run:
            if doc in fused:
                continue
            score = 0.0
            for weight, other in runs:  # the same additions, in the same order, as fuse
                if doc in other:
                    score += weight * other[doc]
            fused[doc] = score
    return sorted(fused.items(), key=lambda item: item[1], reverse=True)[:k]


def rrf(runs: Sequence[Sequence[Hit]], *, k: int, k_rrf: int = 60) -> list[Hit]:
    """Reciprocal rank fusion: a document scores the sum over runs of 1 / (k_rrf + rank), its
    rank in each run from 1; equal scores keep the order the runs met them in."""
    fused: dict[str, float] = {}
    for run in runs:
        for rank, (doc, _) in enumerate(run, start=1):
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (k_rrf + rank)
    return sorted(fused.items(), key=lambda item: item[1], reverse=True)[:k]
