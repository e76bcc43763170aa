"""The embedded engine: Qdrant Edge (`qdrant-edge-py`), Qdrant's storage engine as a library.

Each index is one shard directory under `index.path`, with a dense vector `dense` (dot
product) and a sparse vector `sparse`, the same layout as a collection on a Qdrant server
(serving/index/qdrant_server.py), so moving an index from one to the other changes only where
it lives. A shard is opened by one process: the indexer deployment, one replica.
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import qdrant_edge as qe

from promptserve.serving.index.base import (
    DENSE,
    DOC_ID,
    SPARSE,
    Hit,
    IndexEngine,
    IndexExists,
    NoSuchIndex,
    SparseVector,
    VectorIndex,
    point_id,
    scaled,
)
from promptserve.serving.index.config import IndexEngineConfig

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DIM_FILE = "promptserve-dim"


class EdgeIndex(VectorIndex):
    def __init__(self, name: str, dim: int, shard: Any, config: IndexEngineConfig) -> None:
        self.name, self.dim = name, dim
        self._shard = shard
        self._config = config
        self._lock = threading.Lock()  # one writer at a time; searches do not take it

    def upsert(self, ids: Sequence[str], dense: np.ndarray, sparse: Sequence[SparseVector]) -> None:
        points = []
        for doc_id, vector, terms in zip(ids, dense, sparse, strict=True):
            indices, values = scaled(terms, self._config.sparse_scale)
            named = {
                DENSE: np.asarray(vector, np.float32).tolist(),
                SPARSE: qe.SparseVector(indices=indices, values=values),
            }
            points.append(qe.Point(point_id(doc_id), named, {DOC_ID: doc_id}))
        with self._lock:
            self._shard.update(qe.UpdateOperation.upsert_points(points))
            self._shard.flush()

    def delete(self, ids: Sequence[str]) -> int:
        with self._lock:
            present = sum(self.contains(ids))
            self._shard.update(qe.UpdateOperation.delete_points([point_id(i) for i in ids]))
            self._shard.flush()
        return present

    def contains(self, ids: Sequence[str]) -> list[bool]:
        wanted = [point_id(i) for i in ids]
        found = {str(r.id) for r in self._shard.retrieve(wanted, False, False)}
        return [p in found for p in wanted]

    def count(self) -> int:
        return int(self._shard.count(qe.CountRequest(exact=True)))

    def search(
        self,
        mode: Literal["dense", "sparse"],
        *,
        dense: np.ndarray | None = None,
        sparse: Sequence[SparseVector] | None = None,
        k: int,
    ) -> list[list[Hit]]:
        requests: list[Any] = []
        if mode == DENSE:
            assert dense is not None
            params = qe.SearchParams(exact=self._config.exact)
            for q in np.asarray(dense, np.float32):
                query = qe.Query.Nearest(q.tolist(), using=DENSE)
                requests.append(
                    qe.QueryRequest(limit=k, query=query, with_payload=True, params=params)
                )
        else:
            assert sparse is not None
            for terms in sparse:
                indices, values = scaled(terms, self._config.sparse_scale)
                if not indices:  # no weighted term: an impact search finds nothing
                    requests.append(None)
                    continue
                vector = qe.SparseVector(indices=indices, values=values)
                query = qe.Query.Nearest(vector, using=SPARSE)
                requests.append(qe.QueryRequest(limit=k, query=query, with_payload=True))
        asked = [r for r in requests if r is not None]
        runs = iter(self._shard.query_batch(qe.QueryBatchRequest(asked)) if asked else [])
        return [[] if r is None else _hits(next(runs), mode) for r in requests]

    def close(self) -> None:
        with self._lock:
            self._shard.close()


def _hits(run: list[Any], mode: str) -> list[Hit]:
    """(document id, score) pairs; a sparse match of score 0 shares only zero-weight terms,
    which an impact index does not hold, so it is not a match."""
    return [(p.payload[DOC_ID], float(p.score)) for p in run if mode == DENSE or p.score > 0]


class EdgeEngine(IndexEngine):
    def __init__(self, config: IndexEngineConfig) -> None:
        self.config = config
        self.root = config.data_root() / "shards"
        self.root.mkdir(parents=True, exist_ok=True)
        self._open: dict[str, EdgeIndex] = {}

    def _dir(self, name: str) -> Path:
        if not _NAME.fullmatch(name):
            raise ValueError(f"invalid index name {name!r}")
        return self.root / name

    def _shard_config(self, dim: int) -> Any:
        return qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Dot)},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams()},
        )

    def create(self, name: str, dim: int) -> VectorIndex:
        path = self._dir(name)
        if path.exists():
            raise IndexExists(f"index {name!r} exists")
        shard = qe.EdgeShard.create(str(path), self._shard_config(dim))
        (path / _DIM_FILE).write_text(str(dim))
        index = self._open[name] = EdgeIndex(name, dim, shard, self.config)
        return index

    def open(self, name: str) -> VectorIndex:
        if name in self._open:
            return self._open[name]
        path = self._dir(name)
        if not (path / _DIM_FILE).exists():
            raise NoSuchIndex(f"no index {name!r}")
        dim = int((path / _DIM_FILE).read_text())
        shard = qe.EdgeShard.load(str(path))
        index = self._open[name] = EdgeIndex(name, dim, shard, self.config)
        return index

    def drop(self, name: str) -> None:
        index = self._open.pop(name, None)
        if index is not None:
            index.close()
        shutil.rmtree(self._dir(name), ignore_errors=True)

    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if (p / _DIM_FILE).exists())

    def close(self) -> None:
        for index in self._open.values():
            index.close()
        self._open.clear()
