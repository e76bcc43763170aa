"""The scale-out engine: a Qdrant server or cluster, through qdrant-client.

One collection per index (`<collection_prefix><index_id>`) with the embedded engine's layout:
a named dense vector `dense` (dot product) and a named sparse vector `sparse`, point ids the
same UUIDs of the document ids, the user's id in the payload. Qdrant shards and replicates
the collection over its nodes (`index.shards`, `index.replication_factor`); the indexer is a
stateless client here, so it may run several replicas. Dense search is exact by default
(parity with faiss IndexFlatIP); `index.exact: false` uses the HNSW graph the server builds in
the background, approximate and much faster on millions of documents. Sparse search is exact
either way (Qdrant's sparse search scores every document that shares a term).

No Qdrant server ships as a registry package, so the tests run this module against
qdrant-client's local mode (`url: ":memory:"` or `"path:<dir>"`), which answers the same
client calls in-process; docs/retrieval.md says so.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from promptserve.serving.errors import BackendUnavailable, Conflict, IndexNotFound
from promptserve.serving.index.base import (
    DENSE,
    DOC_ID,
    INDEX_ID,
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


@contextlib.contextmanager
def _server(url: str) -> Iterator[None]:
    """A server that cannot be reached or fails is a 503 with Retry-After, not a 500."""
    try:
        yield
    except ResponseHandlingException as exc:  # connection refused, timeout
        raise BackendUnavailable(f"the Qdrant server at {url} cannot be reached: {exc}") from exc
    except UnexpectedResponse as exc:
        if exc.status_code is not None and exc.status_code < 500:
            raise
        raise BackendUnavailable(f"the Qdrant server at {url} failed: {exc}") from exc


class ServerIndex(VectorIndex):
    def __init__(self, name: str, dim: int, engine: ServerEngine, collection: str) -> None:
        self.name, self.dim = name, dim
        self._engine, self._collection = engine, collection
        self._client, self._url = engine.client, engine.url
        self._scale = engine.config.sparse_scale
        # local mode is always exact and warns on every call that search params do nothing
        exact = None if engine.local else engine.config.exact
        self._params = None if exact is None else models.SearchParams(exact=exact)

    def upsert(self, ids: Sequence[str], dense: np.ndarray, sparse: Sequence[SparseVector]) -> None:
        matrix = check_documents(ids, dense, sparse, self.dim)
        if not ids:
            return
        points = []
        for doc_id, vector, terms in zip(ids, matrix, sparse, strict=True):
            indices, values = stored_terms(terms, self._scale)
            named: dict[str, Any] = {
                DENSE: vector.tolist(),
                SPARSE: models.SparseVector(indices=indices, values=values),
            }
            points.append(
                models.PointStruct(id=point_id(doc_id), vector=named, payload={DOC_ID: doc_id})
            )
        with _server(self._url):
            self._client.upsert(self._collection, points=points, wait=True)

    def delete(self, ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(ids))  # an id named twice is one document
        if not ids:
            return 0
        present = sum(self.contains(ids))
        selector = models.PointIdsList(points=[point_id(i) for i in ids])
        with _server(self._url):
            self._client.delete(self._collection, points_selector=selector, wait=True)
        return present

    def contains(self, ids: Sequence[str]) -> list[bool]:
        wanted = [point_id(i) for i in ids]
        with _server(self._url):
            found = self._client.retrieve(
                self._collection, wanted, with_payload=False, with_vectors=False
            )
        have = {str(p.id) for p in found}
        return [p in have for p in wanted]

    def count(self) -> int:
        with _server(self._url):
            return int(self._client.count(self._collection, exact=True).count)

    def search(
        self,
        mode: SearchMode,
        *,
        dense: np.ndarray | None = None,
        sparse: Sequence[SparseVector] | None = None,
        k: int,
    ) -> list[list[Hit]]:
        queries = check_query(mode, dense, sparse, k, self.dim)
        requests: list[models.QueryRequest | None] = []
        if queries is not None:
            for q in queries:
                requests.append(models.QueryRequest(
                    query=q.tolist(), using=DENSE, limit=k, with_payload=True, params=self._params,
                ))  # fmt: skip
        else:
            for terms in sparse or []:
                indices, values = stored_terms(terms, self._scale)
                if not indices:  # no weighted term: an impact search finds nothing
                    requests.append(None)
                    continue
                vector = models.SparseVector(indices=indices, values=values)
                requests.append(
                    models.QueryRequest(query=vector, using=SPARSE, limit=k, with_payload=True)
                )
        asked = [r for r in requests if r is not None]
        with _server(self._url):
            answers = self._client.query_batch_points(self._collection, asked) if asked else []
        runs = iter(answers)
        out: list[list[Hit]] = []
        for r in requests:
            points = [] if r is None else next(runs).points
            out.append([(str((p.payload or {})[DOC_ID]), float(p.score)) for p in points
                        if mode == DENSE or p.score > 0])  # fmt: skip
        return out


class ServerEngine(IndexEngine):
    def __init__(self, config: IndexEngineConfig) -> None:
        self.config = config
        url = config.url or ""
        self.local = url == ":memory:" or url.startswith("path:")
        if url == ":memory:":
            self.url, self.client = url, QdrantClient(location=":memory:")
        elif url.startswith("path:"):  # qdrant-client's local mode on a folder
            self.url, self.client = url, QdrantClient(path=url[len("path:") :])
        else:
            api_key = os.environ.get(config.api_key_env) if config.api_key_env else None
            timeout = max(1, round(config.timeout_s))
            self.url = url
            self.client = QdrantClient(url=url, api_key=api_key or None, timeout=timeout)

    def _collection(self, name: str) -> str:
        return f"{self.config.collection_prefix}{check_name(name)}"

    def create(self, name: str, dim: int) -> VectorIndex:
        collection = self._collection(name)
        with _server(self.url):
            if self.client.collection_exists(collection):
                raise Conflict(f"index {name!r} exists", param="index_id")
            try:
                self.client.create_collection(
                    collection,
                    vectors_config={
                        DENSE: models.VectorParams(size=dim, distance=models.Distance.DOT)
                    },
                    sparse_vectors_config={SPARSE: models.SparseVectorParams()},
                    shard_number=self.config.shards,
                    replication_factor=self.config.replication_factor,
                )
            except UnexpectedResponse as exc:  # another replica created it meanwhile
                if exc.status_code == 409:
                    raise Conflict(f"index {name!r} exists", param="index_id") from None
                raise
            except ValueError as exc:  # local mode's word for it
                if "already exists" in str(exc):
                    raise Conflict(f"index {name!r} exists", param="index_id") from None
                raise
        return ServerIndex(name, dim, self, collection)

    def open(self, name: str) -> VectorIndex:
        collection = self._collection(name)
        with _server(self.url):
            if not self.client.collection_exists(collection):
                raise IndexNotFound(f"index {name!r} does not exist", param="index_id")
            info = self.client.get_collection(collection)
        vectors = info.config.params.vectors
        sparse = info.config.params.sparse_vectors or {}
        if not isinstance(vectors, dict) or DENSE not in vectors or SPARSE not in sparse:
            raise Conflict(
                f"collection {collection!r} is not a promptserve index (it needs a dense "
                f"vector {DENSE!r} and a sparse vector {SPARSE!r})",
                param="index_id",
            )
        return ServerIndex(name, int(vectors[DENSE].size), self, collection)

    def drop(self, name: str) -> None:
        collection = self._collection(name)
        with _server(self.url):
            if not self.client.collection_exists(collection):
                raise IndexNotFound(f"index {name!r} does not exist", param="index_id")
            self.client.delete_collection(collection)

    def names(self) -> list[str]:
        prefix = self.config.collection_prefix
        with _server(self.url):
            names = [c.name for c in self.client.get_collections().collections]
        ours = (n[len(prefix) :] for n in names if n.startswith(prefix))
        return sorted(n for n in ours if INDEX_ID.fullmatch(n))

    def close(self) -> None:
        self.client.close()
