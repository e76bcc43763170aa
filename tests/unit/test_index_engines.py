"""The index engines on real instances: Qdrant Edge (embedded, the default) and the Qdrant
server engine's client code, run against qdrant-client's local mode (no Qdrant server ships
as a registry package). Searches are checked against exact numpy inner products; the hybrid
fusion against a reference written from the official hybrid.py (tests/parity)."""

from __future__ import annotations

import numpy as np
import pytest

from promptserve.serving.index.base import IndexExists, NoSuchIndex, SparseVector, create_engine
from promptserve.serving.index.config import IndexEngineConfig
from promptserve.serving.index.fusion import hybrid, rrf

DIM, VOCAB = 16, 300


def _data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(n, DIM)).astype(np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    sparse = []
    for _ in range(n):
        ids = rng.choice(VOCAB, size=rng.integers(3, 20), replace=False)
        sparse.append(
            SparseVector(ids.astype(np.int64), rng.random(len(ids)).astype(np.float32) * 3)
        )
    return [f"doc-{i}" for i in range(n)], dense, sparse


def _exact_sparse(q: SparseVector, docs: list[SparseVector], ids: list[str]):
    qw = dict(zip(q.indices.tolist(), np.rint(q.values * 100).tolist(), strict=True))
    out = []
    for doc_id, d in zip(ids, docs, strict=True):
        dw = dict(zip(d.indices.tolist(), np.rint(d.values * 100).tolist(), strict=True))
        s = sum(qw[t] * dw[t] for t in qw.keys() & dw.keys())
        if s > 0:
            out.append((doc_id, s))
    return sorted(out, key=lambda t: (-t[1], t[0]))


@pytest.fixture(params=["qdrant-edge", "qdrant"])
def engine(request, tmp_path):
    if request.param == "qdrant":
        cfg = IndexEngineConfig(
            engine="qdrant", url=f"path:{tmp_path / 'local'}", path=str(tmp_path)
        )
    else:
        cfg = IndexEngineConfig(path=str(tmp_path))
    eng = create_engine(cfg)
    yield eng, cfg
    eng.close()


def test_add_search_delete_and_reopen(engine):
    eng, cfg = engine
    ids, dense, sparse = _data(60)
    index = eng.create("ix", DIM)
    with pytest.raises(IndexExists):
        eng.create("ix", DIM)
    index.upsert(ids[:40], dense[:40], sparse[:40])
    index.upsert(ids[30:], dense[30:], sparse[30:])  # overlapping ids: replaced, not doubled
    assert index.count() == 60
    assert index.contains(["doc-0", "doc-59", "nope"]) == [True, True, False]
    queries = dense[:3] + 0.1
    got = index.search("dense", dense=queries, k=5)
    for q, hits in zip(queries, got, strict=True):
        scores = dense @ q
        order = np.argsort(-scores)[:5]
        assert [h for h, _ in hits] == [ids[i] for i in order]
        np.testing.assert_allclose([s for _, s in hits], scores[order], rtol=1e-5, atol=1e-5)
    qs = sparse[:4]
    for q, hits in zip(qs, index.search("sparse", sparse=qs, k=10), strict=True):
        want = _exact_sparse(q, sparse, ids)[:10]
        assert [s for _, s in hits] == pytest.approx([s for _, s in want])
        assert {h for h, _ in hits} <= {d for d, _ in _exact_sparse(q, sparse, ids)}
    assert index.delete(["doc-1", "doc-2", "nope"]) == 2
    assert index.count() == 58
    eng.close()
    again = create_engine(cfg)
    try:
        reopened = again.open("ix")
        assert reopened.count() == 58 and reopened.dim == DIM
        assert reopened.contains(["doc-1", "doc-3"]) == [False, True]
        assert again.names() == ["ix"]
        again.drop("ix")
        assert again.names() == []
        with pytest.raises(NoSuchIndex):
            again.open("ix")
    finally:
        again.close()


def test_a_query_without_weighted_terms_finds_nothing(engine):
    eng, _ = engine
    ids, dense, sparse = _data(5)
    index = eng.create("empty-q", DIM)
    index.upsert(ids, dense, sparse)
    zero = SparseVector(np.array([1, 2], np.int64), np.array([0.001, 0.0], np.float32))
    assert index.search("sparse", sparse=[zero, sparse[0]], k=3)[0] == []


def test_hybrid_equals_the_official_fusion():
    from parity.hybrid_reference import fuse

    rng = np.random.default_rng(1)
    for _ in range(50):
        docs = [f"d{i}" for i in range(30)]
        d = [(x, float(rng.normal())) for x in rng.choice(docs, 12, replace=False)]
        s = [
            (x, float(rng.integers(0, 5000)))
            for x in rng.choice(docs, rng.integers(0, 12), replace=False)
        ]
        alpha = float(rng.random())
        want = fuse(d, s, alpha)[:10]
        got = hybrid(d, s, alpha=alpha, k=10)
        assert [x for x, _ in got] == [x for x, _ in want]
        np.testing.assert_allclose([v for _, v in got], [v for _, v in want], atol=1e-12)


def test_hybrid_by_hand():
    dense = [("a", 0.9), ("b", 0.5), ("c", 0.1)]
    sparse = [("c", 300.0), ("d", 100.0)]
    # dense: a 1, b 0.5, c 0; sparse: c 1, d 0 -> a .5, b .25, c .5, d 0
    assert hybrid(dense, sparse, alpha=0.5, k=4) == [
        ("a", 0.5),
        ("c", 0.5),
        ("b", 0.25),
        ("d", 0.0),
    ]
    # one run empty: the other stands in for it (hybrid.py), so the ranking is the dense one
    assert [d for d, _ in hybrid(dense, [], alpha=0.3, k=3)] == ["a", "b", "c"]


def test_rrf_by_hand():
    assert rrf([[("a", 9.0), ("b", 1.0)], [("b", 5.0)]], k=2, k_rrf=60) == [
        ("b", 1 / 62 + 1 / 61),
        ("a", 1 / 61),
    ]
