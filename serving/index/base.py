"""The index interface every engine implements, and how document ids become engine ids.

An index holds, per document id, one dense vector and one sparse vector (vocabulary ids ->
weights). Searches are exact inner products by default, so the dense run is faiss
IndexFlatIP's and the sparse run pyserini's impact search (ielab/PromptReps's searchers).
Fusion of the two runs is not the engine's business (serving/index/fusion.py).
"""

from __future__ import annotations

import importlib
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from promptserve.serving.index.config import IndexEngineConfig

Hit = tuple[str, float]  # (document id, score)
DENSE, SPARSE = "dense", "sparse"  # the vectors' names in every engine
DOC_ID = "doc_id"  # the payload key holding the user's document id
_NAMESPACE = uuid.UUID("6f1f4f7e-3b4c-5d2a-9c61-7a0d2b1e9f00")
ENGINES: dict[str, str] = {
    "qdrant-edge": "promptserve.serving.index.qdrant_edge:EdgeEngine",
    "qdrant": "promptserve.serving.index.qdrant_server:ServerEngine",
}


class NoSuchIndex(LookupError):
    """The engine holds no index by that name."""


class IndexExists(ValueError):
    """The engine already holds an index by that name."""


@dataclass(frozen=True)
class SparseVector:
    indices: np.ndarray  # int64 vocabulary ids
    values: np.ndarray  # float32 weights


def point_id(doc_id: str) -> str:
    """The engine's id of a document: a UUID derived from the user's id (engines take only
    integers or UUIDs), stable, so re-adding a document replaces it."""
    return str(uuid.uuid5(_NAMESPACE, doc_id))


def scaled(vector: SparseVector, scale: int | None) -> tuple[list[int], list[float]]:
    """Indices and weights as stored: rint(weight x scale) with the official pyserini scale,
    zero weights dropped (they score nothing and Lucene does not index them)."""
    values = np.asarray(vector.values, dtype=np.float32)
    if scale is not None:
        values = np.rint(values * np.float32(scale))
    keep = values != 0
    return np.asarray(vector.indices)[keep].astype(int).tolist(), values[keep].astype(
        float
    ).tolist()


class VectorIndex(ABC):
    """One named index."""

    name: str
    dim: int

    @abstractmethod
    def upsert(self, ids: Sequence[str], dense: np.ndarray, sparse: Sequence[SparseVector]) -> None:
        """Write the documents in one operation; an id present is replaced."""

    @abstractmethod
    def delete(self, ids: Sequence[str]) -> int:
        """Remove documents; how many were there."""

    @abstractmethod
    def contains(self, ids: Sequence[str]) -> list[bool]: ...

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def search(
        self,
        mode: Literal["dense", "sparse"],
        *,
        dense: np.ndarray | None = None,
        sparse: Sequence[SparseVector] | None = None,
        k: int,
    ) -> list[list[Hit]]:
        """Per query, the best `k` documents, best first (sparse: documents sharing no term
        with the query are not returned, as an impact search returns none)."""


class IndexEngine(ABC):
    """Where the named indexes live."""

    @abstractmethod
    def create(self, name: str, dim: int) -> VectorIndex: ...

    @abstractmethod
    def open(self, name: str) -> VectorIndex: ...

    @abstractmethod
    def drop(self, name: str) -> None: ...

    @abstractmethod
    def names(self) -> list[str]: ...

    @abstractmethod
    def close(self) -> None:
        """Release files and connections."""


def create_engine(config: IndexEngineConfig) -> IndexEngine:
    """The configured engine (its client library imported only when chosen)."""
    module, attribute = ENGINES[config.engine].split(":")
    engine: IndexEngine = getattr(importlib.import_module(module), attribute)(config)
    return engine
