"""`POST /v1/retrieve`: queries against an index, dense, sparse, hybrid (PromptReps) or rrf."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse

from promptserve.models.llm.serve.base import LlmGateway
from promptserve.serving.api import ERRORS, Route, json_body
from promptserve.serving.errors import InvalidInput
from promptserve.serving.index.base import SparseVector
from promptserve.serving.inputs import parse_json
from promptserve.types import Hit, QueryResult, RetrieveRequest, RetrieveResponse


class RetrieveRoutes(LlmGateway):
    ROUTES: ClassVar[tuple[Route, ...]] = (
        Route(
            "POST",
            "/v1/retrieve",
            "retrieve",
            {
                "response_model": RetrieveResponse,
                "responses": ERRORS,
                "openapi_extra": json_body(RetrieveRequest),
            },
        ),
    )

    async def retrieve(self, request: Request) -> JSONResponse:
        async def run() -> JSONResponse:
            self.authorize(request)
            self.shed_early()
            req = await parse_json(request, self.config.limits, RetrieveRequest)
            limits = self.config.limits
            if req.k > limits.max_k:
                raise InvalidInput(
                    f"k={req.k} is above the limit of {limits.max_k} documents per query",
                    param="k",
                )
            if req.depth is not None and req.depth > limits.max_retrieve_depth:
                raise InvalidInput(
                    f"depth={req.depth} is above the limit of {limits.max_retrieve_depth}",
                    param="depth",
                )
            self.check_texts(req.queries, "queries")
            record, ref = await self.index_prompt(req.index_id, "retrieve")
            dense_needed = req.mode != "sparse"
            sparse_needed = req.mode != "dense"
            reps = await self.represent(
                ref, req.queries, "query", dense=dense_needed, sparse=sparse_needed
            )
            dense = (
                np.stack([r.dense for r in reps if r.dense is not None]) if dense_needed else None
            )
            sparse = None
            if sparse_needed:
                sparse = [SparseVector(r.indices, r.values) for r in reps]  # type: ignore[arg-type]
            runs = await self.indexer.search.remote(
                record.index_id,
                req.mode,
                dense=dense,
                sparse=sparse,
                k=req.k,
                alpha=req.alpha,
                depth=req.depth,
            )
            body = RetrieveResponse(
                index_id=record.index_id,
                mode=req.mode,
                results=[
                    QueryResult(
                        index=i,
                        hits=[Hit(id=doc, score=score) for doc, score in hits],
                        truncated=r.truncated,
                    )
                    for i, (hits, r) in enumerate(zip(runs, reps, strict=True))
                ],
            )
            return JSONResponse(body.model_dump(mode="json"))

        return await self.observe("retrieve", run)
