"""The index engines on real instances: Qdrant Edge (embedded, the default) and the Qdrant
server engine's client code run against qdrant-client's local mode on a folder (no Qdrant
server ships as a registry package; local mode answers the same client calls). Searches are
checked against exact numpy (dense) and scipy (sparse impact) inner products computed here
from the inputs; the catalog and the config's rules besides."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from promptserve.serving.errors import BackendUnavailable, Conflict, IndexNotFound, InvalidInput
from promptserve.serving.index.base import SparseVector, create_engine
from promptserve.serving.index.catalog import Catalog, IndexRecord
from promptserve.serving.index.config import IndexEngineConfig

DIM, VOCAB = 16, 200
# qdrant-client checks the server's version from a thread and warns when there is none
pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version")


def _data(n: int, seed: int = 0):
    """Normalised dense vectors; sparse bags of 3-19 distinct ids with weights in (0, 4),
    as PromptReps' log(1 + relu(logit))."""
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(n, DIM)).astype(np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    sparse = []
    for _ in range(n):
        ids = rng.choice(VOCAB, size=rng.integers(3, 20), replace=False)
        weights = (rng.random(len(ids)) * 4).astype(np.float32)
        sparse.append(SparseVector(ids.astype(np.int64), weights))
    return [f"doc-{i}" for i in range(n)], dense, sparse


def _csr(vectors: list[SparseVector], scale: int | None) -> csr_matrix:
    rows, cols, vals = [], [], []
    for r, v in enumerate(vectors):
        w = v.values.astype(np.float64)
        w = np.rint(w * scale) if scale else w
        rows += [r] * len(w)
        cols += v.indices.tolist()
        vals += w.tolist()
    return csr_matrix((vals, (rows, cols)), shape=(len(vectors), VOCAB))


def _exact_sparse(queries, docs, ids, scale, k):
    """Per query: every document with a positive impact score, and the best k, by scipy."""
    scores = (_csr(queries, scale) @ _csr(docs, scale).T).toarray()
    out = []
    for row in scores:
        order = np.argsort(-row, kind="stable")
        out.append([(ids[j], float(row[j])) for j in order if row[j] > 0])
    return out


def _config(kind: str, tmp_path, **extra) -> IndexEngineConfig:
    if kind == "qdrant":
        return IndexEngineConfig(engine="qdrant", url=f"path:{tmp_path / 'local'}", **extra)
    return IndexEngineConfig(path=str(tmp_path / "edge"), **extra)


@pytest.fixture(params=["qdrant-edge", "qdrant"])
def kind(request):
    return request.param


@pytest.fixture
def engine(kind, tmp_path):
    eng = create_engine(_config(kind, tmp_path))
    yield eng
    eng.close()


def test_writes_are_idempotent_by_id_and_deletes_count(engine):
    ids, dense, sparse = _data(50)
    index = engine.create("ix", DIM)
    assert index.count() == 0 and index.dim == DIM
    index.upsert(ids[:30], dense[:30], sparse[:30])
    index.upsert(ids[20:], dense[20:], sparse[20:])  # 10 ids again: replaced, not doubled
    index.upsert(ids[:30], dense[:30], sparse[:30])  # a retried write
    assert index.count() == 50
    assert index.contains(["doc-0", "doc-49", "nope"]) == [True, True, False]
    # replacing a document replaces its vectors: doc-0 now carries doc-1's
    index.upsert(["doc-0"], dense[1:2], sparse[1:2])
    top = index.search("dense", dense=dense[1:2], k=2)[0]
    assert {d for d, _ in top} == {"doc-0", "doc-1"}
    assert index.delete(["doc-1", "doc-2", "nope", "doc-1"]) == 2
    assert index.count() == 48
    assert index.contains(["doc-1", "doc-2", "doc-3"]) == [False, False, True]
    assert "doc-1" not in {d for d, _ in index.search("dense", dense=dense[1:2], k=50)[0]}
    assert index.delete(["doc-1"]) == 0
    index.upsert([], np.zeros((0, DIM), np.float32), [])  # empty writes: no-ops
    assert index.delete([]) == 0 and index.count() == 48


def test_dense_search_is_the_exact_inner_product(engine):
    ids, dense, sparse = _data(120, seed=1)
    index = engine.create("dense", DIM)
    index.upsert(ids, dense, sparse)
    rng = np.random.default_rng(2)
    queries = dense[:4] + 0.3 * rng.normal(size=(4, DIM)).astype(np.float32)  # not normalised
    runs = index.search("dense", dense=queries, k=7)
    assert len(runs) == 4
    for q, hits in zip(queries, runs, strict=True):
        scores = dense.astype(np.float64) @ q.astype(np.float64)
        order = np.argsort(-scores)[:7]
        assert [d for d, _ in hits] == [ids[i] for i in order]
        np.testing.assert_allclose([s for _, s in hits], scores[order], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scale", [100, None])
def test_sparse_search_is_the_exact_impact_product(kind, tmp_path, scale):
    """scale 100: rint(w x 100) integer impacts, pyserini's scores; None: float weights."""
    eng = create_engine(_config(kind, tmp_path, sparse_scale=scale))
    try:
        ids, dense, sparse = _data(150, seed=3)
        index = eng.create("sparse", DIM)
        index.upsert(ids, dense, sparse)
        _, _, queries = _data(8, seed=4)
        k = 10
        got = index.search("sparse", sparse=queries, k=k)
        for hits, every in zip(got, _exact_sparse(queries, sparse, ids, scale, k), strict=True):
            want = every[:k]
            assert len(hits) == len(want)
            np.testing.assert_allclose([s for _, s in hits], [s for _, s in want], rtol=1e-6)
            scores = dict(every)  # each hit scores its exact product ...
            for doc, score in hits:
                assert score == pytest.approx(scores[doc], rel=1e-6)
            # ... and the same documents, up to ties at the k-th score (float32 in the engine)
            cut = want[-1][1] * (1 + 1e-5)
            assert {d for d, s in hits if s > cut} == {d for d, s in want if s > cut}
    finally:
        eng.close()


def test_a_query_without_weighted_terms_finds_nothing(engine):
    ids, dense, sparse = _data(10)
    index = engine.create("empty-q", DIM)
    index.upsert(ids, dense, sparse)
    nothing = SparseVector(np.array([1, 2], np.int64), np.array([0.004, 0.0], np.float32))
    unknown = SparseVector(np.array([VOCAB + 5], np.int64), np.array([1.0], np.float32))
    runs = index.search("sparse", sparse=[nothing, sparse[0], unknown], k=3)
    assert runs[0] == [] and runs[2] == []  # rint(0.4) = 0: the term is dropped, as upstream
    assert runs[1][0][0] == "doc-0"


def test_indexes_persist_across_engine_restarts(kind, tmp_path):
    ids, dense, sparse = _data(40, seed=5)
    config = _config(kind, tmp_path)
    first = create_engine(config)
    index = first.create("kept", DIM)
    index.upsert(ids, dense, sparse)
    index.delete(["doc-3"])
    before = (
        index.search("dense", dense=dense[:2], k=5),
        index.search("sparse", sparse=sparse[:2], k=5),
    )
    first.close()
    again = create_engine(config)
    try:
        assert again.names() == ["kept"]
        reopened = again.open("kept")
        assert reopened.count() == 39 and reopened.dim == DIM
        assert reopened.contains(["doc-3", "doc-4"]) == [False, True]
        after = (
            reopened.search("dense", dense=dense[:2], k=5),
            reopened.search("sparse", sparse=sparse[:2], k=5),
        )
        for runs_after, runs_before in zip(after, before, strict=True):
            for hits_after, hits_before in zip(runs_after, runs_before, strict=True):
                assert [d for d, _ in hits_after] == [d for d, _ in hits_before]
                np.testing.assert_allclose(
                    [s for _, s in hits_after], [s for _, s in hits_before], rtol=1e-6
                )
        again.drop("kept")
        assert again.names() == []
        with pytest.raises(IndexNotFound):
            again.open("kept")
    finally:
        again.close()


def test_names_and_errors(engine):
    engine.create("b-index", DIM)
    engine.create("a.index", 4)
    assert engine.names() == ["a.index", "b-index"]
    assert engine.open("a.index").dim == 4
    with pytest.raises(Conflict):
        engine.create("a.index", DIM)
    with pytest.raises(IndexNotFound):
        engine.open("missing")
    with pytest.raises(IndexNotFound):
        engine.drop("missing")
    for bad in ("", "../up", "a/b", ".hidden", "x" * 65):
        with pytest.raises(InvalidInput):
            engine.create(bad, DIM)


def test_bad_input_is_refused_before_anything_is_written(engine):
    ids, dense, sparse = _data(3)
    index = engine.create("strict", DIM)

    def vec(indices, values):
        return SparseVector(np.array(indices, np.int64), np.array(values, np.float32))

    cases = [
        (ids, dense[:, :8], sparse),  # wrong width
        (ids[:2], dense, sparse),  # counts differ
        (ids, dense, sparse[:2]),
        (["a", "a", "b"], dense, sparse),  # an id twice
        (["a", "", "b"], dense, sparse),
        (ids, np.where(np.eye(3, DIM) > 0, np.nan, dense), sparse),
        (ids, dense, [vec([1, 1], [1, 2]), *sparse[1:]]),  # a term twice
        (ids, dense, [vec([1, 2], [1, -0.5]), *sparse[1:]]),  # negative weight
        (ids, dense, [vec([-1], [1]), *sparse[1:]]),
        (ids, dense, [vec([2**32], [1]), *sparse[1:]]),
        (ids, dense, [vec([1, 2], [1]), *sparse[1:]]),
    ]
    for case in cases:
        with pytest.raises(InvalidInput):
            index.upsert(*case)
    assert index.count() == 0
    with pytest.raises(InvalidInput):
        index.search("dense", dense=dense[:, :8], k=3)
    with pytest.raises(InvalidInput):
        index.search("dense", sparse=sparse, k=3)
    with pytest.raises(InvalidInput):
        index.search("dense", dense=dense, k=0)
    with pytest.raises(InvalidInput):
        index.search("hybrid", dense=dense, sparse=sparse, k=3)  # type: ignore[arg-type]


def test_an_unreachable_server_is_a_503():
    engine = create_engine(
        IndexEngineConfig(engine="qdrant", url="http://127.0.0.1:9", timeout_s=2)
    )
    try:
        with pytest.raises(BackendUnavailable) as err:
            engine.names()
        assert err.value.status == 503 and "Retry-After" in err.value.headers
    finally:
        engine.close()


def test_config_rules(tmp_path):
    assert IndexEngineConfig().engine == "qdrant-edge" and IndexEngineConfig().embedded
    assert IndexEngineConfig(engine="qdrant", url=":memory:").embedded  # in-process
    assert not IndexEngineConfig(engine="qdrant", url="http://q:6333").embedded
    for bad in (
        {"engine": "qdrant"},  # no url
        {"url": "http://q:6333"},  # a url for the embedded engine
        {"exact": False},  # no HNSW maintenance in a shard
        {"engine": "milvus"},
        {"sparse_scale": 0},
        {"unknown": 1},
    ):
        with pytest.raises(ValueError):
            IndexEngineConfig(**bad)
    config = IndexEngineConfig(path=str(tmp_path))
    assert config.catalog_root() == str(tmp_path / "catalog")


def _record(index_id: str = "ix", **extra) -> IndexRecord:
    fields = {
        "index_id": index_id,
        "backbone": "tiny-llama",
        "prompt_id": "promptreps",
        "prompt_content_id": "sha256:abc",
        "dim": DIM,
        "engine": "qdrant-edge",
        "created_at": "2026-01-01T00:00:00Z",
    }
    return IndexRecord(**(fields | extra))


def test_catalog_records(tmp_path):
    catalog = Catalog(tmp_path / "catalog")
    assert catalog.get("ix") is None and catalog.list() == []
    catalog.create(_record("ix"))
    catalog.create(_record("other"))
    with pytest.raises(Conflict):
        catalog.create(_record("ix", backbone="another"))
    assert catalog.get("ix") == _record("ix")
    updated = catalog.update_counts("ix", documents=40)
    updated = catalog.update_counts("ix", documents=37, deleted=3)
    assert (updated.documents, updated.deleted) == (37, 3) and updated.updated_at is not None
    assert Catalog(tmp_path / "catalog").get("ix") == updated  # read back from the file
    assert [r.index_id for r in catalog.list()] == ["ix", "other"]
    assert catalog.delete("other") and not catalog.delete("other")
    with pytest.raises(IndexNotFound):
        catalog.require("other")
    with pytest.raises(IndexNotFound):
        catalog.update_counts("other", documents=1)
    assert not list((tmp_path / "catalog").glob(".*"))  # no temporary files left


def test_catalog_refuses_bad_ids_and_skips_damaged_records(tmp_path):
    catalog = Catalog(tmp_path)
    with pytest.raises(ValueError):
        _record("../escape")
    with pytest.raises(InvalidInput):
        catalog.get("../escape")
    catalog.create(_record("good"))
    (tmp_path / "broken.json").write_text(json.dumps({"index_id": "broken"}))
    assert catalog.get("broken") is None
    assert [r.index_id for r in catalog.list()] == ["good"]
    with pytest.raises(Conflict):  # a damaged record still holds its id
        catalog.create(_record("broken"))
