"""`POST /v1/embed`: dense and sparse PromptReps representations of texts."""

from __future__ import annotations

from typing import ClassVar

from fastapi import Request
from fastapi.responses import JSONResponse

from promptserve.models.llm.serve.base import LlmGateway
from promptserve.serving.api import ERRORS, Route, json_body
from promptserve.serving.inputs import parse_json
from promptserve.types import Embedding, EmbedRequest, EmbedResponse, SparseEmbedding


class EmbedRoutes(LlmGateway):
    ROUTES: ClassVar[tuple[Route, ...]] = (
        Route(
            "POST",
            "/v1/embed",
            "embed",
            {
                "response_model": EmbedResponse,
                "responses": ERRORS,
                "openapi_extra": json_body(EmbedRequest),
            },
        ),
    )

    async def embed(self, request: Request) -> JSONResponse:
        async def run() -> JSONResponse:
            self.authorize(request)
            self.shed_early()
            req = await parse_json(request, self.config.limits, EmbedRequest)
            self.check_texts(req.texts, "texts")
            _, ref = await self.prompt(req.prompt_id, "embed")
            reps = await self.represent(
                ref,
                req.texts,
                req.kind,
                dense=req.dense,
                sparse=req.sparse,
                tokens=req.sparse_tokens,
            )
            data = [
                Embedding(
                    index=i,
                    dense=r.dense.tolist() if r.dense is not None else None,
                    sparse=SparseEmbedding(
                        indices=r.indices.tolist(),
                        values=r.values.tolist(),
                        tokens=r.token_strings,
                    )
                    if r.indices is not None and r.values is not None
                    else None,
                    tokens=r.tokens,
                    truncated=r.truncated,
                )
                for i, r in enumerate(reps)
            ]
            body = EmbedResponse(
                prompt_id=req.prompt_id,
                backbone=self.bundle.backbone_id,
                kind=req.kind,
                data=data,
            )
            return JSONResponse(body.model_dump(mode="json"))

        return await self.observe("embed", run)
