"""PromptReps' hybrid fusion, written from the official code for the tests (not from
serving/index/fusion.py).

ielab/PromptReps at commit 429c3ac (the last change to both files):
- `search.py::get_run_dict` turns one query's top-depth hits into
  {'docs': {doc: score}, 'min_score': min(scores), 'max_score': max(scores)}, min and max 0
  when the searcher found nothing;
- `search.py::main` calls `hybrid.py::fuse(runs=[dense_run, sparse_run],
  weights=[alpha, 1 - alpha])`;
- `hybrid.py::fuse` walks the runs in order and each run's documents in order; a document not
  yet fused scores the sum over runs holding it of
  weight * (score - min_score) / max(max_score - min_score, 1e-9), a run without it adding 0;
- `hybrid.py::write_trec_run` ranks a query's fused documents with
  `sorted(items, key=score, reverse=True)`, a stable sort.
`hybrid.py`'s own command line (`__main__`) instead fills a query missing from one run file
with the other run's list: `cli_fill` below, for the test that says where that path differs.
"""

from __future__ import annotations


def get_run_dict(hits: list[tuple[str, float]]) -> dict:
    """search.py::get_run_dict for one query (remove_query off)."""
    scores = [score for _, score in hits]
    run = {"docs": {}}
    for doc, score in hits:
        run["docs"][doc] = score
    if len(scores) == 0:
        run["min_score"] = 0
        run["max_score"] = 0
    else:
        run["min_score"] = min(scores)
        run["max_score"] = max(scores)
    return run


def fuse(runs: list[dict], weights: list[float]) -> dict[str, float]:
    """hybrid.py::fuse for one query."""
    fused = {}
    for run in runs:
        for doc in run["docs"]:
            if doc not in fused:
                score = 0
                for temp_run, weight in zip(runs, weights, strict=True):
                    if doc in temp_run["docs"]:
                        min_score = temp_run["min_score"]
                        max_score = temp_run["max_score"]
                        denominator = max_score - min_score
                        denominator = max(denominator, 1e-9)
                        score += weight * ((temp_run["docs"][doc] - min_score) / denominator)
                    else:
                        score += 0
                fused[doc] = score
    return fused


def ranked(fused: dict[str, float]) -> list[tuple[str, float]]:
    """hybrid.py::write_trec_run's order."""
    return sorted(fused.items(), key=lambda item: item[1], reverse=True)


def hybrid_search(
    dense: list[tuple[str, float]], sparse: list[tuple[str, float]], alpha: float = 0.5
) -> list[tuple[str, float]]:
    """What search.py writes to rank.hybrid.trec for one query, best first."""
    runs = [get_run_dict(dense), get_run_dict(sparse)]
    return ranked(fuse(runs, [alpha, 1 - alpha]))


def cli_fill(
    dense: list[tuple[str, float]], sparse: list[tuple[str, float]]
) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """hybrid.py's __main__: a query absent from one run file (no hits: no lines) takes the
    other run's list."""
    return (dense or sparse), (sparse or dense)
