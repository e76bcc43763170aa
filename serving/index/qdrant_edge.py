"""The embedded engine: Qdrant Edge (`qdrant-edge-py`), Qdrant's Rust storage engine as a
library. No server: `pip install` and the indexes are directories under `index.path`.

Each index is one shard directory with a dense vector `dense` (dot product, no normalisation:
the vectors come normalised, as the official faiss IndexFlatIP gets them) and a sparse vector
`sparse`, the layout of a collection on a Qdrant server (serving/index/qdrant_server.py), so
moving an index there changes where it lives, not what it answers. Searches are exact: dense
scores every vector (`SearchParams(exact=True)`), sparse uses Qdrant's inverted index, which
is exact. No optimizer runs (a shard has none in the background, and an HNSW graph would buy
nothing for exact search), so a shard stays one appendable segment.

A shard is locked by the process that opened it (its write-ahead log): the indexer
deployment, one replica, holds it; `AppConfig` refuses more replicas with this engine.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from promptserve.serving.errors import Conflict, IndexNotFound
from promptserve.serving.index.base import (
    DENSE,
    DOC_ID,
    SPARSE,
    Hit,
    IndexEngine,
    SearchMode,
    SparseVector,
    VectorIndex,
    check_documents,
    check_name,
    check_query,
    point_id,
    stored_terms,
)
from promptserve.serving.index.config import IndexEngineConfig

LAYOUT_FILE = "promptserve-index.json"  # written last: a directory without it is a leftover
LAYOUT_VERSION = 1


class EdgeIndex(VectorIndex):
    def __init__(self, name: str, dim: int, shard: Any, config: IndexEngineConfig) -> None:
        self.name, self.dim = name, dim
        self._shard = shard
        self._scale = config.sparse_scale
        self._lock = threading.Lock()  # one write at a time; searches read concurrently

    def upsert(self, ids: Sequence[str], dense: np.ndarray, sparse: Sequence[SparseVector]) -> None:
        matrix = check_documents(ids, dense, sparse, self.dim)
        if not ids:
            return
        points = []
        for doc_id, vector, terms in zip(ids, matrix, sparse, strict=True):
            indices, values = stored_terms(terms, self._scale)
            named = {DENSE: vector, SPARSE: qe.SparseVector(indices=indices, values=values)}
            points.append(qe.Point(point_id(doc_id), named, {DOC_ID: doc_id}))
        with self._lock:
            self._shard.update(qe.UpdateOperation.upsert_points(points))
            self._shard.flush()  # durable when the call returns

    def delete(self, ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(ids))  # an id named twice is one document
        if not ids:
            return 0
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
        mode: SearchMode,
        *,
        dense: np.ndarray | None = None,
        sparse: Sequence[SparseVector] | None = None,
        k: int,
    ) -> list[list[Hit]]:
        queries = check_query(mode, dense, sparse, k, self.dim)
        requests: list[Any] = []
        if queries is not None:
            params = qe.SearchParams(exact=True)
            for q in queries:
                query = qe.Query.Nearest(q.tolist(), using=DENSE)
                requests.append(
                    qe.QueryRequest(limit=k, query=query, with_payload=True, params=params)
                )
        else:
            for terms in sparse or []:
                indices, values = stored_terms(terms, self._scale)
                if not indices:  # no weighted term: an impact search finds nothing
                    requests.append(None)
                    continue
                query = qe.Query.Nearest(qe.SparseVector(indices=indices, values=values), SPARSE)
                requests.append(qe.QueryRequest(limit=k, query=query, with_payload=True))
        asked = [r for r in requests if r is not None]
        runs = iter(self._shard.query_batch(qe.QueryBatchRequest(asked)) if asked else [])
        return [[] if r is None else _hits(next(runs), mode) for r in requests]

    def close(self) -> None:
        with self._lock:
            self._shard.close()


def _hits(run: list[Any], mode: SearchMode) -> list[Hit]:
    """(document id, score) pairs; a sparse match must share a weighted term (score > 0)."""
    return [(p.payload[DOC_ID], float(p.score)) for p in run if mode == DENSE or p.score > 0]


class EdgeEngine(IndexEngine):
    """Shards under `<index.path>/shards/<index_id>`."""

    def __init__(self, config: IndexEngineConfig) -> None:
        self.config = config
        self.root = config.data_root() / "shards"
        self.root.mkdir(parents=True, exist_ok=True)
        self._open: dict[str, EdgeIndex] = {}
        self._lock = threading.Lock()

    def _dir(self, name: str) -> Path:
        return self.root / check_name(name)

    def create(self, name: str, dim: int) -> VectorIndex:
        path = self._dir(name)
        with self._lock:
            if (path / LAYOUT_FILE).exists():
                raise Conflict(f"index {name!r} exists", param="index_id")
            shutil.rmtree(path, ignore_errors=True)  # a create that did not finish
            config = qe.EdgeConfig(
                vectors={DENSE: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Dot)},
                sparse_vectors={SPARSE: qe.EdgeSparseVectorParams()},
            )
            shard = qe.EdgeShard.create(str(path), config)
            _write_layout(path, dim)
            index = self._open[name] = EdgeIndex(name, dim, shard, self.config)
            return index

    def open(self, name: str) -> VectorIndex:
        path = self._dir(name)
        with self._lock:
            if name in self._open:
                return self._open[name]
            try:
                layout = json.loads((path / LAYOUT_FILE).read_text())
            except FileNotFoundError:
                raise IndexNotFound(f"index {name!r} does not exist", param="index_id") from None
            shard = qe.EdgeShard.load(str(path))
            index = self._open[name] = EdgeIndex(name, int(layout["dim"]), shard, self.config)
            return index

    def drop(self, name: str) -> None:
        path = self._dir(name)
        with self._lock:
            index = self._open.pop(name, None)
            if index is not None:
                index.close()
            if not (path / LAYOUT_FILE).exists():
                raise IndexNotFound(f"index {name!r} does not exist", param="index_id")
            (path / LAYOUT_FILE).unlink()  # first: a drop cut short leaves a leftover, no index
            shutil.rmtree(path, ignore_errors=True)

    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if (p / LAYOUT_FILE).exists())

    def close(self) -> None:
        with self._lock:
            for index in self._open.values():
                index.close()
            self._open.clear()


def _write_layout(path: Path, dim: int) -> None:
    temp = path / f".{LAYOUT_FILE}.tmp"
    temp.write_text(json.dumps({"version": LAYOUT_VERSION, "dim": dim}))
    os.replace(temp, path / LAYOUT_FILE)
