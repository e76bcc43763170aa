"""Token-budget batching of the LLM encoder: a closed batch is cut into length buckets whose
padded area (rows x longest row) fits the budget."""

from __future__ import annotations

import numpy as np

from promptserve.models.llm.serve.encoder import bucket


def test_buckets_fit_the_budget_and_cover_every_row_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 500, size=200).tolist()
    groups = bucket(lengths, budget=2048)
    seen = sorted(i for g in groups for i in g)
    assert seen == list(range(len(lengths)))
    for g in groups:
        assert len(g) * max(lengths[i] for i in g) <= 2048


def test_short_rows_are_not_padded_to_a_long_one():
    lengths = [8, 9, 10, 11, 500]
    groups = bucket(lengths, budget=512)
    assert [sorted(g) for g in groups] == [[0, 1, 2, 3], [4]]


def test_one_row_longer_than_the_budget_is_its_own_batch():
    assert bucket([600, 10], budget=512) == [[1], [0]]


def test_a_call_is_cut_into_consecutive_runs_within_the_budget():
    from promptserve.models.llm.serve.encoder import runs

    assert runs([100, 200, 300, 400], budget=600) == [range(0, 3), range(3, 4)]
    assert runs([700, 10], budget=600) == [range(0, 1), range(1, 2)]
    assert runs([], budget=600) == []
    lengths = np.random.default_rng(1).integers(1, 300, 100).tolist()
    parts = runs(lengths, budget=1000)
    assert [i for p in parts for i in p] == list(range(100))
    assert all(sum(lengths[i] for i in p) <= 1000 for p in parts)
