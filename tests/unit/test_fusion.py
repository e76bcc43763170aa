"""Hybrid fusion against PromptReps' own (tests/parity/hybrid_reference.py, written from
ielab/PromptReps search.py and hybrid.py), on crafted and random runs: documents missing from
a run, empty runs, runs of equal scores, ties in the fused score; and RRF by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from promptserve.serving.index.fusion import hybrid, rrf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "parity"))
import hybrid_reference as official


def test_by_hand():
    dense = [("a", 0.9), ("b", 0.5), ("c", 0.1)]
    sparse = [("c", 300.0), ("d", 100.0)]
    # dense normalised: a 1, b 0.5, c 0; sparse: c 1, d 0
    assert hybrid(dense, sparse, alpha=0.5, k=10) == [
        ("a", 0.5),
        ("c", 0.5),
        ("b", 0.25),
        ("d", 0.0),
    ]
    assert hybrid(dense, sparse, alpha=0.8, k=2) == [("a", 0.8), ("b", 0.4)]


def test_equal_scores_keep_the_official_order_not_the_id_order():
    """write_trec_run's stable sort: dense-run order first, then sparse-only documents."""
    dense = [("z", 0.9), ("y", 0.5), ("x", 0.1)]
    sparse = [("x", 300.0), ("w", 100.0), ("v", 100.0)]
    got = hybrid(dense, sparse, alpha=0.5, k=10)
    assert [d for d, _ in got] == ["z", "x", "y", "w", "v"]
    assert got == official.hybrid_search(dense, sparse, 0.5)


def test_an_empty_run_adds_nothing():
    """search.py: a query the sparse searcher found nothing for has min = max = 0 and no
    documents, so the fused score is alpha x the normalised dense score."""
    dense = [("a", 3.0), ("b", 2.0), ("c", 1.0)]
    got = hybrid(dense, [], alpha=0.3, k=3)
    assert [d for d, _ in got] == ["a", "b", "c"]
    assert [s for _, s in got] == pytest.approx([0.3, 0.15, 0.0])
    assert got == official.hybrid_search(dense, [], 0.3)
    assert hybrid([], [], k=5) == []


def test_hybrid_py_command_line_fill_ranks_the_same():
    """hybrid.py's __main__ fills an absent run with the other; scores differ by a factor,
    the ranking does not."""
    dense = [("a", 3.0), ("b", 2.5), ("c", 1.0)]
    filled = official.hybrid_search(*official.cli_fill(dense, []), 0.3)
    assert [d for d, _ in hybrid(dense, [], alpha=0.3, k=3)] == [d for d, _ in filled]


def test_a_run_of_equal_scores_normalises_to_zero():
    """Denominator max(max - min, 1e-9): a run whose scores are all equal contributes 0."""
    dense = [("a", 0.7), ("b", 0.7)]
    sparse = [("b", 500.0), ("c", 100.0)]
    assert hybrid(dense, sparse, alpha=0.5, k=3) == [("b", 0.5), ("a", 0.0), ("c", 0.0)]
    assert hybrid([("a", 0.7)], [], k=1) == [("a", 0.0)]


@pytest.mark.parametrize("seed", range(5))
def test_random_runs_equal_the_official_fusion(seed):
    rng = np.random.default_rng(seed)
    docs = [f"d{i}" for i in range(40)]
    for _ in range(60):
        n_dense, n_sparse = rng.integers(0, 25, size=2)
        dense = sorted(
            ((str(x), float(np.float32(rng.normal()))) for x in rng.choice(docs, n_dense, False)),
            key=lambda h: -h[1],
        )
        sparse = sorted(  # integer impact scores: ties are common
            ((str(x), float(rng.integers(1, 40))) for x in rng.choice(docs, n_sparse, False)),
            key=lambda h: -h[1],
        )
        alpha = float(rng.choice([0.0, 0.5, 1.0, rng.random()]))
        k = int(rng.integers(1, 30))
        want = official.hybrid_search(dense, sparse, alpha)[:k]
        assert hybrid(dense, sparse, alpha=alpha, k=k) == want  # ids, order and scores


def test_rrf_by_hand():
    runs = [[("a", 9.0), ("b", 1.0)], [("b", 5.0), ("c", 4.0)]]
    assert rrf(runs, k=3, k_rrf=60) == [("b", 1 / 62 + 1 / 61), ("a", 1 / 61), ("c", 1 / 62)]
    assert rrf(runs, k=1) == [("b", 1 / 62 + 1 / 61)]
    # equal scores: the order the runs met them in
    assert [d for d, _ in rrf([[("x", 1.0)], [("y", 1.0)]], k=2)] == ["x", "y"]
