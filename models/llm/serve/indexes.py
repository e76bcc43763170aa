"""Indexes and their documents: `POST/GET /v1/indexes`, `GET/DELETE /v1/indexes/{index_id}`,
`POST /v1/indexes/{index_id}/documents` (bulk add), `.../documents/delete`, `.../lookup`.

A bulk add is all-or-nothing: every document is validated and encoded before any is
written, and the write is one engine call, so a refused request leaves the index as it was.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from fastapi import Request, Response
from fastapi.responses import JSONResponse

from promptserve.models.llm.promptreps import passage_text
from promptserve.models.llm.serve.base import LlmGateway, check_index_id
from promptserve.serving.api import ERRORS, Route, json_body
from promptserve.serving.errors import InvalidInput
from promptserve.serving.index.base import SparseVector
from promptserve.serving.index.catalog import IndexRecord
from promptserve.serving.inputs import parse_json
from promptserve.serving.store import shown
from promptserve.types import (
    AddDocumentsRequest,
    AddDocumentsResponse,
    CreateIndexRequest,
    DeleteDocumentsResponse,
    DocumentIdsRequest,
    IndexInfo,
    IndexList,
    LookupDocumentsResponse,
)

_DOCS = "/v1/indexes/{index_id}/documents"


def index_info(record: IndexRecord) -> IndexInfo:
    return IndexInfo.model_validate(record.model_dump())


class IndexRoutes(LlmGateway):
    ROUTES: ClassVar[tuple[Route, ...]] = (
        Route(
            "POST",
            "/v1/indexes",
            "create_index",
            {
                "status_code": 201,
                "response_model": IndexInfo,
                "responses": ERRORS,
                "openapi_extra": json_body(CreateIndexRequest),
            },
        ),
        Route(
            "GET", "/v1/indexes", "list_indexes", {"response_model": IndexList, "responses": ERRORS}
        ),
        Route(
            "GET",
            "/v1/indexes/{index_id}",
            "get_index",
            {"response_model": IndexInfo, "responses": ERRORS},
        ),
        Route(
            "DELETE",
            "/v1/indexes/{index_id}",
            "delete_index",
            {"status_code": 204, "responses": ERRORS},
        ),
        Route(
            "POST",
            _DOCS,
            "add_documents",
            {
                "response_model": AddDocumentsResponse,
                "responses": ERRORS,
                "openapi_extra": json_body(AddDocumentsRequest),
            },
        ),
        Route(
            "POST",
            _DOCS + "/delete",
            "delete_documents",
            {
                "response_model": DeleteDocumentsResponse,
                "responses": ERRORS,
                "openapi_extra": json_body(DocumentIdsRequest),
            },
        ),
        Route(
            "POST",
            _DOCS + "/lookup",
            "lookup_documents",
            {
                "response_model": LookupDocumentsResponse,
                "responses": ERRORS,
                "openapi_extra": json_body(DocumentIdsRequest),
            },
        ),
    )

    async def create_index(self, request: Request) -> JSONResponse:
        async def run() -> JSONResponse:
            self.authorize(request, "admin")
            req = await parse_json(request, self.config.limits, CreateIndexRequest)
            info, _ = await self.prompt(req.prompt_id, "retrieve")
            record = await self.indexer.create.remote(
                check_index_id(req.index_id),
                backbone=self.bundle.backbone_id,
                prompt_id=info.prompt_id,
                prompt_content_id=info.content_id,
                dim=self.llm.hidden_size,
            )
            return JSONResponse(index_info(record).model_dump(mode="json"), status_code=201)

        return await self.observe("indexes.create", run)

    async def list_indexes(self, request: Request) -> IndexList:
        async def run() -> IndexList:
            self.authorize(request)
            records = await self.indexer.records.remote()
            return IndexList(data=[index_info(r) for r in records])

        return await self.observe("indexes.list", run)

    async def get_index(self, index_id: str, request: Request) -> IndexInfo:
        async def run() -> IndexInfo:
            self.authorize(request)
            return index_info(await self.index_record(index_id))

        return await self.observe("indexes.get", run)

    async def delete_index(self, index_id: str, request: Request) -> Response:
        async def run() -> Response:
            self.authorize(request, "admin")
            await self.indexer.drop.remote(check_index_id(index_id))
            return Response(status_code=204)

        return await self.observe("indexes.delete", run)

    async def add_documents(self, index_id: str, request: Request) -> JSONResponse:
        async def run() -> JSONResponse:
            self.authorize(request, "admin")
            self.shed_early()
            req = await parse_json(request, self.config.limits, AddDocumentsRequest)
            docs = req.documents
            _check_ids([d.id for d in docs], "documents")
            texts = [passage_text(d.text, d.title) for d in docs]
            self.check_texts(texts, "documents")
            record, ref = await self.index_prompt(index_id, "retrieve")
            reps = await self.represent(ref, texts, "passage")
            dense = np.stack([r.dense for r in reps if r.dense is not None]).astype(np.float32)
            sparse = [SparseVector(r.indices, r.values) for r in reps]  # type: ignore[arg-type]
            ids = [d.id for d in docs]
            updated = await self.indexer.upsert.remote(record.index_id, ids, dense, sparse)
            body = AddDocumentsResponse(
                index_id=record.index_id,
                added=len(docs),
                truncated=[d.id for d, r in zip(docs, reps, strict=True) if r.truncated],
                documents=updated.documents,
            )
            return JSONResponse(body.model_dump(mode="json"))

        return await self.observe("indexes.documents.add", run)

    async def delete_documents(self, index_id: str, request: Request) -> JSONResponse:
        async def run() -> JSONResponse:
            self.authorize(request, "admin")
            req = await parse_json(request, self.config.limits, DocumentIdsRequest)
            _check_ids(req.ids, "ids", limit=self.config.limits.max_texts_per_request * 16)
            deleted, updated = await self.indexer.delete.remote(check_index_id(index_id), req.ids)
            body = DeleteDocumentsResponse(
                index_id=index_id, deleted=deleted, documents=updated.documents
            )
            return JSONResponse(body.model_dump(mode="json"))

        return await self.observe("indexes.documents.delete", run)

    async def lookup_documents(self, index_id: str, request: Request) -> JSONResponse:
        async def run() -> JSONResponse:
            self.authorize(request)
            req = await parse_json(request, self.config.limits, DocumentIdsRequest)
            _check_ids(req.ids, "ids", limit=self.config.limits.max_texts_per_request * 16)
            present = await self.indexer.lookup.remote(check_index_id(index_id), req.ids)
            body = LookupDocumentsResponse(index_id=index_id, present=present)
            return JSONResponse(body.model_dump(mode="json"))

        return await self.observe("indexes.documents.lookup", run)


def _check_ids(ids: list[str], param: str, limit: int | None = None) -> None:
    """Ids are unique within a request (a bulk add holding one id twice would keep whichever
    came last: ambiguous, so refused) and not blank."""
    if limit is not None and len(ids) > limit:
        raise InvalidInput(f"{len(ids)} ids in one request, above {limit}", param=param)
    seen: set[str] = set()
    for i, doc_id in enumerate(ids):
        if not doc_id.strip() or len(doc_id) > 512:
            raise InvalidInput(
                f"{param}[{i}]: a document id must be 1-512 characters, not blank",
                param=f"{param}[{i}]",
            )
        if doc_id in seen:
            raise InvalidInput(
                f"{param}[{i}]: id {shown(doc_id)} appears twice in this request; each "
                "document once",
                param=f"{param}[{i}]",
            )
        seen.add(doc_id)
