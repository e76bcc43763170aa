"""The scale-out engine: a Qdrant server or cluster through qdrant-client.

One collection per index (`<collection_prefix><index_id>`) with the embedded engine's layout:
a named dense vector `dense` (dot product) and a named sparse vector `sparse`, point ids the
same UUIDs of the document ids, the user's id in the payload. The indexer is a stateless
client here, so it may run several replicas (and the server shards and replicates).

No Qdrant server ships as a registry package, so the tests run this module against
qdrant-client's local mode (`url: ":memory:"` or `path:...`), which answers the same client
calls in-process; docs/retrieval.md says so.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from qdrant_client import QdrantClient, models

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


class ServerIndex(VectorIndex):
    def __init__(
        self, name: str, dim: int, client: QdrantClient, collection: str, config: IndexEngineConfig
    ) -> None:
        self.name, self.dim = name, dim
        self._client, self._collection, self._config = client, collection, config

    def upsert(self, ids: Sequence[str], dense: np.ndarray, sparse: Sequence[SparseVector]) -> None:
        points = []
        for doc_id, vector, terms in zip(ids, dense, sparse, strict=True):
            indices, values = scaled(terms, self._config.sparse_scale)
            named: dict[str, Any] = {
                DENSE: np.asarray(vector, np.float32).tolist(),
                SPARSE: models.SparseVector(indices=indices, values=values),
            }
            points.append(
                models.PointStruct(id=point_id(doc_id), vector=named, payload={DOC_ID: doc_id})
            )
        self._client.upsert(self._collection, points=points, wait=True)

    def delete(self, ids: Sequence[str]) -> int:
        present = sum(self.contains(ids))
        selector = models.PointIdsList(points=[point_id(i) for i in ids])
        self._client.delete(self._collection, points_selector=selector, wait=True)
        return present

    def contains(self, ids: Sequence[str]) -> list[bool]:
        wanted = [point_id(i) for i in ids]
        found = self._client.retrieve(
            self._collection, wanted, with_payload=False, with_vectors=False
        )
        have = {str(p.id) for p in found}
        return [p in have for p in wanted]

    def count(self) -> int:
        return int(self._client.count(self._collection, exact=True).count)

    def search(
        self,
        mode: Literal["dense", "sparse"],
        *,
        dense: np.ndarray | None = None,
        sparse: Sequence[SparseVector] | None = None,
        k: int,
    ) -> list[list[Hit]]:
        requests: list[models.QueryRequest | None] = []
        if mode == DENSE:
            assert dense is not None
            params = models.SearchParams(exact=self._config.exact)
            for q in np.asarray(dense, np.float32):
                requests.append(models.QueryRequest(
                    query=q.tolist(), using=DENSE, limit=k, with_payload=True, params=params,
                ))  # fmt: skip
        else:
            assert sparse is not None
            for terms in sparse:
                indices, values = scaled(terms, self._config.sparse_scale)
                if not indices:
                    requests.append(None)
                    continue
                vector = models.SparseVector(indices=indices, values=values)
                requests.append(
                    models.QueryRequest(query=vector, using=SPARSE, limit=k, with_payload=True)
                )
        asked = [r for r in requests if r is not None]
        answers = iter(self._client.query_batch_points(self._collection, asked) if asked else [])
        out: list[list[Hit]] = []
        for r in requests:
            if r is None:
                out.append([])
                continue
            points = next(answers).points
            out.append([(str((p.payload or {})[DOC_ID]), float(p.score)) for p in points
                        if mode == DENSE or p.score > 0])  # fmt: skip
        return out


class ServerEngine(IndexEngine):
    def __init__(self, config: IndexEngineConfig) -> None:
        self.config = config
        api_key = os.environ.get(config.api_key_env) if config.api_key_env else None
        url = config.url or ""
        if url == ":memory:":
            self.client = QdrantClient(location=":memory:")
        elif url.startswith("path:"):  # qdrant-client's local mode on a folder (tests)
            self.client = QdrantClient(path=url[len("path:") :])
        else:
            self.client = QdrantClient(url=url, api_key=api_key, timeout=int(config.timeout_s))

    def _collection(self, name: str) -> str:
        return f"{self.config.collection_prefix}{name}"

    def create(self, name: str, dim: int) -> VectorIndex:
        collection = self._collection(name)
        if self.client.collection_exists(collection):
            raise IndexExists(f"index {name!r} exists")
        self.client.create_collection(
            collection,
            vectors_config={DENSE: models.VectorParams(size=dim, distance=models.Distance.DOT)},
            sparse_vectors_config={SPARSE: models.SparseVectorParams()},
        )
        return ServerIndex(name, dim, self.client, collection, self.config)

    def open(self, name: str) -> VectorIndex:
        collection = self._collection(name)
        if not self.client.collection_exists(collection):
            raise NoSuchIndex(f"no index {name!r}")
        vectors = self.client.get_collection(collection).config.params.vectors
        dim = vectors[DENSE].size if isinstance(vectors, dict) else 0
        return ServerIndex(name, int(dim), self.client, collection, self.config)

    def drop(self, name: str) -> None:
        self.client.delete_collection(self._collection(name))

    def names(self) -> list[str]:
        prefix = self.config.collection_prefix
        names = [c.name for c in self.client.get_collections().collections]
        return sorted(n[len(prefix) :] for n in names if n.startswith(prefix))

    def close(self) -> None:
        self.client.close()
