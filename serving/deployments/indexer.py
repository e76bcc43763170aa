"""The deployment that holds the index engine: named indexes, their catalog, writes and
searches, and the fusion of dense and sparse runs.

Why a deployment of its own: the embedded engine keeps its files in one process, so exactly
one replica may own them, whatever the gateway and encoder replica counts are; with a server
engine (Qdrant) this is a stateless client and scales like the gateway. It knows no family:
vectors come in, document ids and scores go out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np

from promptserve.serving.config import AppConfig
from promptserve.serving.index.base import Hit, SparseVector, VectorIndex, create_engine
from promptserve.serving.index.catalog import Catalog, IndexRecord
from promptserve.serving.index.fusion import hybrid, rrf
from promptserve.serving.metrics import metrics

SearchMode = Literal["dense", "sparse", "hybrid", "rrf"]


class Indexer:
    """One replica's view of every index: the engine and the catalog that names what each
    index was built with (backbone, prompt artifact), so a query encoded otherwise is refused."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.engine = create_engine(config.index)
        self.catalog = Catalog(config.index.catalog_root())
        self._open: dict[str, VectorIndex] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        for record in self.catalog.list():
            metrics().index_documents.set(record.documents, tags={"index_id": record.index_id})

    def _lock(self, index_id: str) -> asyncio.Lock:
        return self._locks.setdefault(index_id, asyncio.Lock())

    def _index(self, record: IndexRecord) -> VectorIndex:
        index = self._open.get(record.index_id)
        if index is None:
            index = self._open[record.index_id] = self.engine.open(record.index_id)
        return index

    # -- the catalog ---------------------------------------------------------------------
    async def create(
        self, index_id: str, *, backbone: str, prompt_id: str, prompt_content_id: str, dim: int
    ) -> IndexRecord:
        async with self._lock(index_id):
            record = IndexRecord(
                index_id=index_id,
                backbone=backbone,
                prompt_id=prompt_id,
                prompt_content_id=prompt_content_id,
                dim=dim,
                engine=self.config.index.engine,
                created_at=datetime.now(timezone.utc),
            )
            await asyncio.to_thread(self._create, record)
            metrics().index_documents.set(0, tags={"index_id": index_id})
            return record

    def _create(self, record: IndexRecord) -> None:
        self.catalog.create(record)  # the 409, atomic across indexer replicas
        try:
            if record.index_id in self.engine.names():  # left by a create that did not finish
                self.engine.drop(record.index_id)
            self._open[record.index_id] = self.engine.create(record.index_id, record.dim)
        except BaseException:
            self.catalog.delete(record.index_id)
            raise

    async def get(self, index_id: str) -> IndexRecord:
        return await asyncio.to_thread(self.catalog.require, index_id)

    async def records(self) -> list[IndexRecord]:
        return await asyncio.to_thread(self.catalog.list)

    async def drop(self, index_id: str) -> None:
        async with self._lock(index_id):
            await self.get(index_id)
            self._open.pop(index_id, None)
            await asyncio.to_thread(self._drop, index_id)
        metrics().index_documents.set(0, tags={"index_id": index_id})

    def _drop(self, index_id: str) -> None:
        self.catalog.delete(index_id)  # first: an index half dropped is gone for clients
        if index_id in self.engine.names():
            self.engine.drop(index_id)

    # -- documents -----------------------------------------------------------------------
    async def upsert(
        self,
        index_id: str,
        ids: Sequence[str],
        dense: np.ndarray,
        sparse: Sequence[SparseVector],
    ) -> IndexRecord:
        """Write every document or none (one engine call); an id present is replaced."""
        async with self._lock(index_id):
            record = await self.get(index_id)  # the engine checks shapes (check_documents)
            index = self._index(record)
            await asyncio.to_thread(index.upsert, list(ids), dense, list(sparse))
            updated = await asyncio.to_thread(self._recount, record, index, 0)
        metrics().index_writes.inc(len(ids), tags={"op": "add"})
        return updated

    async def delete(self, index_id: str, ids: Sequence[str]) -> tuple[int, IndexRecord]:
        async with self._lock(index_id):
            record = await self.get(index_id)
            index = self._index(record)
            deleted = await asyncio.to_thread(index.delete, list(ids))
            updated = await asyncio.to_thread(self._recount, record, index, deleted)
        metrics().index_writes.inc(deleted, tags={"op": "delete"})
        return deleted, updated

    def _recount(self, record: IndexRecord, index: VectorIndex, deleted: int) -> IndexRecord:
        updated = self.catalog.update_counts(
            record.index_id, documents=index.count(), deleted=deleted
        )
        metrics().index_documents.set(updated.documents, tags={"index_id": record.index_id})
        return updated

    async def lookup(self, index_id: str, ids: Sequence[str]) -> list[str]:
        """The ids that are in the index (a client resuming a bulk add skips them)."""
        record = await self.get(index_id)
        present = await asyncio.to_thread(self._index(record).contains, list(ids))
        return [i for i, hit in zip(ids, present, strict=True) if hit]

    # -- search --------------------------------------------------------------------------
    async def search(
        self,
        index_id: str,
        mode: SearchMode,
        *,
        dense: np.ndarray | None,
        sparse: Sequence[SparseVector] | None,
        k: int,
        alpha: float = 0.5,
        depth: int | None = None,
    ) -> list[list[Hit]]:
        """Each query's best `k` documents. hybrid and rrf search both runs to `depth` (at
        least `k`) and fuse them here, so the PromptReps formula is what hybrid means on any
        engine (serving/index/fusion.py)."""
        record = await self.get(index_id)
        index = self._index(record)
        started = time.perf_counter()
        hits: list[list[Hit]]
        if mode in ("dense", "sparse"):
            hits = await asyncio.to_thread(index.search, mode, dense=dense, sparse=sparse, k=k)
        else:
            n = max(k, depth or self.config.limits.max_retrieve_depth)
            dense_runs, sparse_runs = await asyncio.gather(
                asyncio.to_thread(index.search, "dense", dense=dense, k=n),
                asyncio.to_thread(index.search, "sparse", sparse=sparse, k=n),
            )
            if mode == "hybrid":
                hits = [
                    hybrid(d, s, alpha=alpha, k=k)
                    for d, s in zip(dense_runs, sparse_runs, strict=True)
                ]
            else:
                hits = [rrf([d, s], k=k) for d, s in zip(dense_runs, sparse_runs, strict=True)]
        metrics().index_query_latency.observe(time.perf_counter() - started, tags={"mode": mode})
        return hits

    async def check_health(self) -> None:
        """Serve's probe: the engine answers (a server engine may be down). Also refreshes the
        document-count gauge from the catalog, so with several replicas (server engine) each
        reports what others wrote too and `max by (index_id)` is current."""
        await asyncio.to_thread(self.engine.names)
        for record in await asyncio.to_thread(self.catalog.list):
            metrics().index_documents.set(record.documents, tags={"index_id": record.index_id})

    def __del__(self) -> None:
        engine: Any = getattr(self, "engine", None)
        if engine is not None:
            engine.close()
