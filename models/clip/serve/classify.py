"""`POST /v1/classify`: zero-shot classification with a registered prompt or free labels."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from fastapi import Request
from fastapi.responses import JSONResponse

from promptserve.models.clip.serve.base import ClipGateway, batch_header, templates
from promptserve.models.clip.serve.calls import ClassifyCall, Labels
from promptserve.models.clip.serve.inputs import decode_crops, parse_classify
from promptserve.serving.api import ERRORS, Route, images_body
from promptserve.serving.metrics import metrics
from promptserve.serving.store import PromptRef
from promptserve.types import ClassifyRequest, ClassifyResponse

BODY = images_body(ClassifyRequest)


class ClassifyRoutes(ClipGateway):
    ROUTES: ClassVar[tuple[Route, ...]] = (
        Route(
            "POST",
            "/v1/classify",
            "classify",
            {"response_model": ClassifyResponse, "responses": ERRORS, "openapi_extra": BODY},
        ),
    )

    async def classify(self, request: Request) -> JSONResponse:
        return await self.task_route("classify", request, parse_classify, self._classify)

    async def _classify(self, req: ClassifyRequest, blobs: list[bytes]) -> JSONResponse:
        n = len(blobs)
        async with self.admitted(n):
            head: PromptRef | Labels
            if req.prompt_id is not None:
                info, head = await self.prompt(req.prompt_id, "classify")
                labels = info.classnames or []
            else:
                labels = list(req.labels or ())
                head = Labels(
                    tuple(labels), templates(req.templates, len(labels), self.config.limits)
                )
            crops = await asyncio.to_thread(
                decode_crops, blobs, self.clip.preprocess, self.config.limits
            )
            call = ClassifyCall(
                crops=crops, head=head, top_k=req.top_k, return_logits=req.return_logits
            )
            out = await self.encoder.call("classify", call)
        metrics().images.inc(n)
        body = ClassifyResponse(
            prompt_id=req.prompt_id,
            backbone=self.bundle.backbone_id,
            labels=labels,
            results=out["results"],
        )
        return JSONResponse(body.model_dump(mode="json"), headers=batch_header(out["batch_images"]))
