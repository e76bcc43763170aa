"""Retrieval calls of `Client` and `AsyncClient`: representations, indexes, documents, search.

As in `_client.py`, requests are planned and answers merged by one code path (the functions
at the top); only sending, and running chunks concurrently (threads vs tasks), is written per
client, in the two mixins.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from promptserve._base import Timeout
from promptserve._exceptions import InvalidInput
from promptserve.types import (
    AddDocumentsRequest,
    AddDocumentsResponse,
    CreateIndexRequest,
    DeleteDocumentsResponse,
    Document,
    DocumentIdsRequest,
    EmbedRequest,
    EmbedResponse,
    IndexInfo,
    IndexList,
    LookupDocumentsResponse,
    ModelInfo,
    RetrieveRequest,
    RetrieveResponse,
)

__all__ = ["AsyncRetrievalMixin", "IndexingResult", "RetrievalMixin"]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
DocumentInput = Document | Mapping[str, Any] | tuple[str, str]
Mode = Literal["dense", "sparse", "hybrid", "rrf"]
TEXT_CHUNK = 64  # texts per request: well inside the default server limit (256)
LOOKUP_CHUNK = 1024  # ids per lookup request


@dataclass
class IndexingResult:
    """What `index_documents` did."""

    added: int = 0
    skipped: int = field(default=0, metadata={"doc": "already in the index (resume)"})
    truncated: list[str] = field(default_factory=list)
    documents: int = 0  # in the index afterwards


# -- planning, shared by the twins -------------------------------------------------------------


def _index_path(index_id: str, *rest: str) -> str:
    return "/".join([f"/v1/indexes/{quote(index_id, safe='')}", *rest])


def _texts(texts: str | Sequence[str], param: str) -> list[str]:
    items = [texts] if isinstance(texts, str) else list(texts)
    if not items:
        raise InvalidInput(f"`{param}` is empty", param=param)
    return items


def _documents(docs: Iterable[DocumentInput]) -> list[Document]:
    """Documents as `Document`s: from models, dicts (`id`, `text`, optional `title`; BEIR's
    `_id` too) or (id, text) pairs. Checked here so a bad one fails before anything is sent."""
    out: list[Document] = []
    for i, doc in enumerate(docs):
        try:
            if isinstance(doc, Document):
                out.append(doc)
            elif isinstance(doc, tuple):
                out.append(Document(id=doc[0], text=doc[1]))
            else:
                data = dict(doc)
                if "_id" in data and "id" not in data:
                    data["id"] = data.pop("_id")
                out.append(
                    Document.model_validate({k: data.get(k) for k in ("id", "text", "title")})
                )
        except (ValidationError, TypeError, IndexError, ValueError) as exc:
            raise InvalidInput(f"documents[{i}]: {exc}", param=f"documents[{i}]") from exc
    twice = [doc_id for doc_id, n in Counter(d.id for d in out).items() if n > 1]
    if twice:
        raise InvalidInput(f"document id {twice[0]!r} appears twice", param="documents")
    return out


def _chunks(items: Sequence[T], size: int) -> list[tuple[int, Sequence[T]]]:
    if size < 1:
        raise InvalidInput("`chunk_size` must be >= 1", param="chunk_size")
    return [(i, items[i : i + size]) for i in range(0, len(items), size)]


def _merge_retrieve(parts: Sequence[tuple[int, RetrieveResponse]]) -> RetrieveResponse:
    results = [
        r.model_copy(update={"index": offset + r.index})
        for offset, part in parts
        for r in part.results
    ]
    return parts[0][1].model_copy(update={"results": results})


def _merge_embed(parts: Sequence[tuple[int, EmbedResponse]]) -> EmbedResponse:
    data = [e.model_copy(update={"index": offset + e.index}) for offset, p in parts for e in p.data]
    return parts[0][1].model_copy(update={"data": data})


def _tally(
    result: IndexingResult, answers: Sequence[AddDocumentsResponse], documents: int | None
) -> IndexingResult:
    """The chunks' answers summed into `result`; `documents` is the index's size when no
    chunk was sent (everything was there already)."""
    for a in answers:
        result.added += a.added
        result.truncated += a.truncated
    result.documents = max(a.documents for a in answers) if answers else (documents or 0)
    return result


def _bar(total: int, progress: bool | None, desc: str) -> Any:
    from tqdm.auto import tqdm

    show = total > 1000 if progress is None else progress
    return tqdm(total=total, unit="doc", desc=desc, disable=not show)


# -- the twins ----------------------------------------------------------------------------------


def _clamped(chunk_size: int, info: ModelInfo | None) -> int:
    """`chunk_size`, at most the server's `max_texts_per_request`."""
    if chunk_size < 1:
        raise InvalidInput("`chunk_size` must be >= 1", param="chunk_size")
    if info is None or info.max_texts_per_request is None:
        return chunk_size
    return min(chunk_size, info.max_texts_per_request)


class RetrievalMixin:
    """Retrieval methods of `Client`."""

    _request: Callable[..., httpx.Response]
    _parse: Callable[..., Any]
    _model_info: ModelInfo | None
    model_info: Callable[..., ModelInfo]

    def _texts_per_request(self, chunk_size: int) -> int:
        """Chunks no larger than the server takes (asks it once per client)."""
        return _clamped(chunk_size, self._model_info or self.model_info())

    def _post(self, path: str, body: BaseModel, model: type[M], timeout: Timeout | None) -> M:
        parsed: M = self._parse(self._request("POST", path, body=body, timeout=timeout), model)
        return parsed

    def _pool(self, fn: Callable[[Any], T], items: Sequence[Any], concurrency: int) -> list[T]:
        if len(items) <= 1 or concurrency <= 1:
            return [fn(item) for item in items]
        pool = ThreadPoolExecutor(min(concurrency, len(items)), "promptserve")
        try:
            return [f.result() for f in [pool.submit(fn, item) for item in items]]
        finally:
            pool.shutdown(cancel_futures=True)

    def embed(
        self,
        texts: str | Sequence[str],
        *,
        prompt_id: str,
        kind: Literal["query", "passage"] = "query",
        dense: bool = True,
        sparse: bool = True,
        sparse_tokens: bool = False,
        chunk_size: int = TEXT_CHUNK,
        concurrency: int = 4,
        timeout: Timeout | None = None,
    ) -> EmbedResponse:
        """Dense and sparse representations of texts (PromptReps: one forward pass each).

        Args:
            texts: One text or a list; longer lists are sent in chunks of `chunk_size`.
            prompt_id: A registered representation prompt.
            kind: `query` or `passage`: the two sides have different prompts.
            dense, sparse: Which representations to return.
            sparse_tokens: Also return the token string of each sparse id.

        Returns:
            `EmbedResponse` whose `data[i]` is `texts[i]` (`truncated` says a text was cut at
            the prompt's max length, as the official code cuts it).
        """
        items = _texts(texts, "texts")
        try:
            template = EmbedRequest(
                texts=["-"], prompt_id=prompt_id, kind=kind, dense=dense, sparse=sparse,
                sparse_tokens=sparse_tokens,
            )  # fmt: skip
        except ValidationError as exc:
            raise InvalidInput(str(exc), param="prompt_id") from exc

        def send(chunk: tuple[int, Sequence[str]]) -> tuple[int, EmbedResponse]:
            body = template.model_copy(update={"texts": list(chunk[1])})
            return chunk[0], self._post("/v1/embed", body, EmbedResponse, timeout)

        size = self._texts_per_request(chunk_size)
        return _merge_embed(self._pool(send, _chunks(items, size), concurrency))

    def create_index(
        self, index_id: str, *, prompt_id: str, timeout: Timeout | None = None
    ) -> IndexInfo:
        """Create an empty index whose documents and queries `prompt_id` represents."""
        try:
            body = CreateIndexRequest(index_id=index_id, prompt_id=prompt_id)
        except ValidationError as exc:
            raise InvalidInput(str(exc), param="index_id") from exc
        return self._post("/v1/indexes", body, IndexInfo, timeout)

    def list_indexes(self, *, timeout: Timeout | None = None) -> list[IndexInfo]:
        response = self._request("GET", "/v1/indexes", timeout=timeout)
        listed: IndexList = self._parse(response, IndexList)
        return listed.data

    def get_index(self, index_id: str, *, timeout: Timeout | None = None) -> IndexInfo:
        """One index; raises `IndexNotFound` if there is none by that id."""
        info: IndexInfo = self._parse(
            self._request("GET", _index_path(index_id), timeout=timeout), IndexInfo
        )
        return info

    def delete_index(self, index_id: str, *, timeout: Timeout | None = None) -> None:
        self._request("DELETE", _index_path(index_id), timeout=timeout)

    def present_documents(
        self, ids: Sequence[str], *, index_id: str, timeout: Timeout | None = None
    ) -> set[str]:
        """Which of `ids` are in the index."""
        present: set[str] = set()
        for _, part in _chunks(list(ids), LOOKUP_CHUNK):
            body = DocumentIdsRequest(ids=list(part))
            path = _index_path(index_id, "documents", "lookup")
            present.update(self._post(path, body, LookupDocumentsResponse, timeout).present)
        return present

    def index_documents(
        self,
        documents: Iterable[DocumentInput],
        *,
        index_id: str,
        skip_existing: bool = True,
        chunk_size: int = TEXT_CHUNK,
        concurrency: int = 4,
        progress: bool | None = None,
        timeout: Timeout | None = None,
    ) -> IndexingResult:
        """Add documents to an index: chunked, `concurrency` requests at once, resumable.

        Args:
            documents: `Document`s, dicts with `id` (or BEIR's `_id`), `text` and optional
                `title`, or (id, text) pairs.
            skip_existing: Ask the index which ids it holds first and send only the others,
                so a run that was interrupted picks up where it stopped. False re-encodes and
                replaces them (adding is idempotent by id either way).
            progress: A tqdm bar ("index"); by default above 1000 documents.

        Each request is all-or-nothing on the server; a failing chunk raises, and chunks
        already sent stay indexed (run again to resume).
        """
        docs = _documents(documents)
        result = IndexingResult()
        if skip_existing and docs:
            present = self.present_documents(
                [d.id for d in docs], index_id=index_id, timeout=timeout
            )
            result.skipped = len(present)
            docs = [d for d in docs if d.id not in present]
        path = _index_path(index_id, "documents")
        with _bar(len(docs) + result.skipped, progress, "index") as bar:
            bar.update(result.skipped)

            def send(chunk: tuple[int, Sequence[Document]]) -> AddDocumentsResponse:
                body = AddDocumentsRequest(documents=list(chunk[1]))
                out = self._post(path, body, AddDocumentsResponse, timeout)
                bar.update(len(chunk[1]))
                return out

            size = self._texts_per_request(chunk_size)
            answers = self._pool(send, _chunks(docs, size), concurrency) if docs else []
        size_now = None if answers else self.get_index(index_id).documents
        return _tally(result, answers, size_now)

    def delete_documents(
        self, ids: Sequence[str], *, index_id: str, timeout: Timeout | None = None
    ) -> int:
        """Remove documents by id; returns how many were in the index."""
        deleted = 0
        for _, part in _chunks(list(ids), LOOKUP_CHUNK):
            body = DocumentIdsRequest(ids=list(part))
            path = _index_path(index_id, "documents", "delete")
            deleted += self._post(path, body, DeleteDocumentsResponse, timeout).deleted
        return deleted

    def retrieve(
        self,
        queries: str | Sequence[str],
        *,
        index_id: str,
        k: int = 10,
        mode: Mode = "hybrid",
        alpha: float = 0.5,
        depth: int | None = None,
        chunk_size: int = TEXT_CHUNK,
        concurrency: int = 4,
        timeout: Timeout | None = None,
    ) -> RetrieveResponse:
        """The best `k` documents of the index for each query.

        Args:
            mode: `dense`, `sparse`, `hybrid` (PromptReps: alpha x min-max dense + (1 - alpha)
                x min-max sparse, per query) or `rrf`.
            depth: Candidates per run fused by hybrid/rrf (server default: its limit, 1000).

        Returns:
            `RetrieveResponse` whose `results[i].hits` answer `queries[i]`, best first.
        """
        items = _texts(queries, "queries")
        try:
            template = RetrieveRequest(
                queries=["-"], index_id=index_id, k=k, mode=mode, alpha=alpha, depth=depth
            )
        except ValidationError as exc:
            raise InvalidInput(str(exc), param="k") from exc

        def send(chunk: tuple[int, Sequence[str]]) -> tuple[int, RetrieveResponse]:
            body = template.model_copy(update={"queries": list(chunk[1])})
            return chunk[0], self._post("/v1/retrieve", body, RetrieveResponse, timeout)

        size = self._texts_per_request(chunk_size)
        return _merge_retrieve(self._pool(send, _chunks(items, size), concurrency))


class AsyncRetrievalMixin:
    """Retrieval methods of `AsyncClient`: `RetrievalMixin`'s, awaitable."""

    _request: Callable[..., Any]
    _parse: Callable[..., Any]
    _model_info: ModelInfo | None
    model_info: Callable[..., Any]

    async def _texts_per_request(self, chunk_size: int) -> int:
        return _clamped(chunk_size, self._model_info or await self.model_info())

    async def _post(self, path: str, body: BaseModel, model: type[M], timeout: Timeout | None) -> M:
        parsed: M = self._parse(
            await self._request("POST", path, body=body, timeout=timeout), model
        )
        return parsed

    async def _gather(
        self, fn: Callable[[Any], Any], items: Sequence[Any], concurrency: int
    ) -> list[Any]:
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(item: Any) -> Any:
            async with gate:
                return await fn(item)

        return list(await asyncio.gather(*(one(item) for item in items)))

    async def embed(
        self,
        texts: str | Sequence[str],
        *,
        prompt_id: str,
        kind: Literal["query", "passage"] = "query",
        dense: bool = True,
        sparse: bool = True,
        sparse_tokens: bool = False,
        chunk_size: int = TEXT_CHUNK,
        concurrency: int = 4,
        timeout: Timeout | None = None,
    ) -> EmbedResponse:
        """See `Client.embed`."""
        items = _texts(texts, "texts")
        template = EmbedRequest(
            texts=["-"], prompt_id=prompt_id, kind=kind, dense=dense, sparse=sparse,
            sparse_tokens=sparse_tokens,
        )  # fmt: skip

        async def send(chunk: tuple[int, Sequence[str]]) -> tuple[int, EmbedResponse]:
            body = template.model_copy(update={"texts": list(chunk[1])})
            return chunk[0], await self._post("/v1/embed", body, EmbedResponse, timeout)

        size = await self._texts_per_request(chunk_size)
        return _merge_embed(await self._gather(send, _chunks(items, size), concurrency))

    async def create_index(
        self, index_id: str, *, prompt_id: str, timeout: Timeout | None = None
    ) -> IndexInfo:
        """See `Client.create_index`."""
        try:
            body = CreateIndexRequest(index_id=index_id, prompt_id=prompt_id)
        except ValidationError as exc:
            raise InvalidInput(str(exc), param="index_id") from exc
        return await self._post("/v1/indexes", body, IndexInfo, timeout)

    async def list_indexes(self, *, timeout: Timeout | None = None) -> list[IndexInfo]:
        response = await self._request("GET", "/v1/indexes", timeout=timeout)
        listed: IndexList = self._parse(response, IndexList)
        return listed.data

    async def get_index(self, index_id: str, *, timeout: Timeout | None = None) -> IndexInfo:
        response = await self._request("GET", _index_path(index_id), timeout=timeout)
        info: IndexInfo = self._parse(response, IndexInfo)
        return info

    async def delete_index(self, index_id: str, *, timeout: Timeout | None = None) -> None:
        await self._request("DELETE", _index_path(index_id), timeout=timeout)

    async def present_documents(
        self, ids: Sequence[str], *, index_id: str, timeout: Timeout | None = None
    ) -> set[str]:
        present: set[str] = set()
        for _, part in _chunks(list(ids), LOOKUP_CHUNK):
            body = DocumentIdsRequest(ids=list(part))
            path = _index_path(index_id, "documents", "lookup")
            present.update((await self._post(path, body, LookupDocumentsResponse, timeout)).present)
        return present

    async def index_documents(
        self,
        documents: Iterable[DocumentInput],
        *,
        index_id: str,
        skip_existing: bool = True,
        chunk_size: int = TEXT_CHUNK,
        concurrency: int = 4,
        progress: bool | None = None,
        timeout: Timeout | None = None,
    ) -> IndexingResult:
        """See `Client.index_documents`."""
        docs = _documents(documents)
        result = IndexingResult()
        if skip_existing and docs:
            present = await self.present_documents(
                [d.id for d in docs], index_id=index_id, timeout=timeout
            )
            result.skipped = len(present)
            docs = [d for d in docs if d.id not in present]
        path = _index_path(index_id, "documents")
        with _bar(len(docs) + result.skipped, progress, "index") as bar:
            bar.update(result.skipped)

            async def send(chunk: tuple[int, Sequence[Document]]) -> AddDocumentsResponse:
                body = AddDocumentsRequest(documents=list(chunk[1]))
                out = await self._post(path, body, AddDocumentsResponse, timeout)
                bar.update(len(chunk[1]))
                return out

            size = await self._texts_per_request(chunk_size)
            answers = await self._gather(send, _chunks(docs, size), concurrency) if docs else []
        size_now = None if answers else (await self.get_index(index_id)).documents
        return _tally(result, answers, size_now)

    async def delete_documents(
        self, ids: Sequence[str], *, index_id: str, timeout: Timeout | None = None
    ) -> int:
        deleted = 0
        for _, part in _chunks(list(ids), LOOKUP_CHUNK):
            body = DocumentIdsRequest(ids=list(part))
            path = _index_path(index_id, "documents", "delete")
            deleted += (await self._post(path, body, DeleteDocumentsResponse, timeout)).deleted
        return deleted

    async def retrieve(
        self,
        queries: str | Sequence[str],
        *,
        index_id: str,
        k: int = 10,
        mode: Mode = "hybrid",
        alpha: float = 0.5,
        depth: int | None = None,
        chunk_size: int = TEXT_CHUNK,
        concurrency: int = 4,
        timeout: Timeout | None = None,
    ) -> RetrieveResponse:
        """See `Client.retrieve`."""
        items = _texts(queries, "queries")
        try:
            template = RetrieveRequest(
                queries=["-"], index_id=index_id, k=k, mode=mode, alpha=alpha, depth=depth
            )
        except ValidationError as exc:
            raise InvalidInput(str(exc), param="k") from exc

        async def send(chunk: tuple[int, Sequence[str]]) -> tuple[int, RetrieveResponse]:
            body = template.model_copy(update={"queries": list(chunk[1])})
            return chunk[0], await self._post("/v1/retrieve", body, RetrieveResponse, timeout)

        size = await self._texts_per_request(chunk_size)
        return _merge_retrieve(await self._gather(send, _chunks(items, size), concurrency))
