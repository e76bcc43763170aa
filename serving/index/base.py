"""The index interface every engine implements, and what every engine shares: how document ids
become engine ids, how sparse weights are stored, how inputs are checked.

An index holds, per document id, one dense vector and one sparse vector (vocabulary ids ->
weights). Searches are exact inner products by default, so the dense run is faiss
IndexFlatIP's and the sparse run pyserini's impact search, the two searchers of
ielab/PromptReps `search.py::main` (`FaissFlatSearcher`, `LuceneImpactSearcher`). Fusing the
two runs is not the engine's business (serving/index/fusion.py), so `mode=hybrid` means the
paper's formula whichever engine holds the vectors.
"""

from __future__ import annotations

import importlib
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from promptserve.serving.errors import InvalidInput
from promptserve.serving.index.config import IndexEngineConfig

Hit = tuple[str, float]  # (document id, score)
SearchMode = Literal["dense", "sparse"]
DENSE, SPARSE = "dense", "sparse"  # the vectors' names in every engine
DOC_ID = "doc_id"  # the payload key holding the user's document id
INDEX_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # like prompt ids; also a dir name
MAX_TERM_ID = 2**32 - 1  # Qdrant's sparse indices are u32
# Fixed forever: point ids derive from it, so changing it would orphan every stored document.
_NAMESPACE = uuid.UUID("6f1f4f7e-3b4c-5d2a-9c61-7a0d2b1e9f00")
ENGINES: dict[str, str] = {
    "qdrant-edge": "promptserve.serving.index.qdrant_edge:EdgeEngine",
    "qdrant": "promptserve.serving.index.qdrant_server:ServerEngine",
}


@dataclass(frozen=True)
class SparseVector:
    """A bag of vocabulary ids with weights (PromptReps: log(1 + relu(logit)) >= 0)."""

    indices: np.ndarray  # int64 vocabulary ids, distinct
    values: np.ndarray  # float32 weights, >= 0


def point_id(doc_id: str) -> str:
    """The engine's id of a document: a UUID derived from the user's id (Qdrant takes only
    integers or UUIDs), stable across processes and engines, so re-adding a document replaces
    it. The user's id itself is kept in the payload (`DOC_ID`) and returned by searches."""
    return str(uuid.uuid5(_NAMESPACE, doc_id))


def check_name(name: str) -> str:
    if not isinstance(name, str) or not INDEX_ID.fullmatch(name):
        raise InvalidInput(
            f"invalid index name {name!r}: 1-64 letters, digits, '.', '_' or '-', starting "
            "with a letter or digit",
            param="index_id",
        )
    return name


def stored_terms(vector: SparseVector, scale: int | None) -> tuple[list[int], list[float]]:
    """Indices and weights as an engine stores and queries them.

    With `scale` (100, the default) each weight becomes rint(weight x scale), what
    ielab/PromptReps `encode.py::get_valid_tokens_values` writes for pyserini's impact index
    (documents) and repeats into the query string (queries), so an engine's inner product is
    pyserini's impact score. Terms whose stored weight is 0 are dropped: they add nothing to
    any score and the official query string omits them (a term repeated 0 times)."""
    indices = np.asarray(vector.indices)
    values = np.asarray(vector.values, dtype=np.float32)
    if scale is not None:
        values = np.rint(values * np.float32(scale))
    keep = values > 0
    return indices[keep].astype(np.int64).tolist(), values[keep].astype(np.float64).tolist()


def check_documents(
    ids: Sequence[str], dense: np.ndarray, sparse: Sequence[SparseVector], dim: int
) -> np.ndarray:
    """The dense matrix as float32 after checking that the three inputs line up; a 400 that
    names the problem, before the engine is touched (a write is all or nothing)."""
    matrix = np.asarray(dense, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape != (len(ids), dim):
        raise InvalidInput(
            f"dense vectors of shape {tuple(matrix.shape)} for {len(ids)} documents of an "
            f"index of width {dim}",
            param="dense",
        )
    if len(sparse) != len(ids):
        raise InvalidInput(f"{len(sparse)} sparse vectors for {len(ids)} documents", param="sparse")
    if len(set(ids)) != len(ids):
        raise InvalidInput("a document id appears twice in one write", param="ids")
    for doc_id in ids:
        if not isinstance(doc_id, str) or not doc_id:
            raise InvalidInput(f"document ids are non-empty strings, not {doc_id!r}", param="ids")
    check_dense(matrix)
    for vector in sparse:
        check_sparse(vector)
    return matrix


def check_dense(matrix: np.ndarray) -> None:
    if not np.isfinite(matrix).all():
        raise InvalidInput("dense vectors hold NaN or infinite values", param="dense")


def check_sparse(vector: SparseVector) -> None:
    indices, values = np.asarray(vector.indices), np.asarray(vector.values)
    if indices.ndim != 1 or indices.shape != values.shape:
        raise InvalidInput(
            f"a sparse vector has {indices.shape} indices for {values.shape} values",
            param="sparse",
        )
    if indices.size == 0:
        return
    if not np.issubdtype(indices.dtype, np.integer):
        raise InvalidInput("sparse indices are integers (vocabulary ids)", param="sparse")
    if indices.min() < 0 or indices.max() > MAX_TERM_ID:
        raise InvalidInput(f"sparse indices lie in [0, {MAX_TERM_ID}]", param="sparse")
    if np.unique(indices).size != indices.size:
        raise InvalidInput("a sparse vector names a vocabulary id twice", param="sparse")
    if not np.isfinite(values).all() or values.min() < 0:
        raise InvalidInput(
            "sparse weights are finite and >= 0 (PromptReps weights are log(1 + relu(logit)))",
            param="sparse",
        )


class VectorIndex(ABC):
    """One named index (a Qdrant shard or collection)."""

    name: str
    dim: int

    @abstractmethod
    def upsert(self, ids: Sequence[str], dense: np.ndarray, sparse: Sequence[SparseVector]) -> None:
        """Write the documents in one engine call; an id present is replaced (so a retried
        write is harmless)."""

    @abstractmethod
    def delete(self, ids: Sequence[str]) -> int:
        """Remove documents; how many of them were there."""

    @abstractmethod
    def contains(self, ids: Sequence[str]) -> list[bool]:
        """Per id, whether the index holds it (a client resuming a bulk add skips those)."""

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def search(
        self,
        mode: SearchMode,
        *,
        dense: np.ndarray | None = None,
        sparse: Sequence[SparseVector] | None = None,
        k: int,
    ) -> list[list[Hit]]:
        """Per query, the best `k` documents, best first. Sparse: only documents sharing a
        weighted term with the query, as an impact search returns."""


class IndexEngine(ABC):
    """Where the named indexes live."""

    @abstractmethod
    def create(self, name: str, dim: int) -> VectorIndex:
        """A new empty index; Conflict (409) if the name is taken."""

    @abstractmethod
    def open(self, name: str) -> VectorIndex:
        """An existing index; IndexNotFound (404) if there is none."""

    @abstractmethod
    def drop(self, name: str) -> None:
        """Remove an index and its vectors; IndexNotFound (404) if there is none."""

    @abstractmethod
    def names(self) -> list[str]: ...

    @abstractmethod
    def close(self) -> None:
        """Release files and connections."""


def check_query(
    mode: str,
    dense: np.ndarray | None,
    sparse: Sequence[SparseVector] | None,
    k: int,
    dim: int,
) -> np.ndarray | None:
    """The checked query input of a search (the dense queries as float32)."""
    if k < 1:
        raise InvalidInput(f"k is at least 1, not {k}", param="k")
    if mode == DENSE:
        if dense is None:
            raise InvalidInput("a dense search needs dense query vectors", param="dense")
        queries = np.asarray(dense, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != dim:
            raise InvalidInput(
                f"dense queries of shape {tuple(queries.shape)} for an index of width {dim}",
                param="dense",
            )
        check_dense(queries)
        return queries
    if mode == SPARSE:
        if sparse is None:
            raise InvalidInput("a sparse search needs sparse query vectors", param="sparse")
        for vector in sparse:
            check_sparse(vector)
        return None
    raise InvalidInput(f"search mode is dense or sparse, not {mode!r}", param="mode")


def create_engine(config: IndexEngineConfig) -> IndexEngine:
    """The configured engine (its client library imported only when chosen)."""
    module, attribute = ENGINES[config.engine].split(":")
    engine: IndexEngine = getattr(importlib.import_module(module), attribute)(config)
    return engine
