"""`POST /v1/anomaly`: anomaly scores and maps, from an AnomalyCLIP prompt or a WinCLIP object
name."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from fastapi import Request
from fastapi.responses import JSONResponse

from promptserve.models.clip.serve.base import ClipGateway, batch_header
from promptserve.models.clip.serve.calls import AnomalyCall, ObjectName
from promptserve.models.clip.serve.inputs import decode_resized, parse_anomaly
from promptserve.serving.deployments.gateway import ERRORS, Route, images_body
from promptserve.serving.metrics import metrics
from promptserve.serving.store import PromptRef
from promptserve.types import AnomalyRequest, AnomalyResponse

BODY = images_body(
    "AnomalyRequest",
    {"prompt_id": {"type": "string"}, "object_name": {"type": "string"}},
    ["images"],
)


class AnomalyRoutes(ClipGateway):
    ROUTES: ClassVar[tuple[Route, ...]] = (
        Route(
            "POST",
            "/v1/anomaly",
            "anomaly",
            {"response_model": AnomalyResponse, "responses": ERRORS, "openapi_extra": BODY},
        ),
    )

    async def anomaly(self, request: Request) -> JSONResponse:
        return await self.task_route("anomaly", request, parse_anomaly, self._anomaly)

    async def _anomaly(self, req: AnomalyRequest, blobs: list[bytes]) -> JSONResponse:
        head, size = await self._head(req)
        n = len(blobs)
        async with self.admitted(n):
            crops, sizes = await asyncio.to_thread(decode_resized, blobs, size, self.config.limits)
            call = AnomalyCall(crops=crops, sizes=tuple(sizes), head=head)
            out = await self.encoder.call("detect_anomalies", call)
        metrics().images.inc(n)
        body = AnomalyResponse(
            prompt_id=head.prompt_id if isinstance(head, PromptRef) else None,
            object_name=head.name if isinstance(head, ObjectName) else None,
            method=req.method,
            backbone=self.bundle.backbone_id,
            results=out["results"],
        )
        return JSONResponse(body.model_dump(mode="json"), headers=batch_header(out["batch_images"]))

    async def _head(self, req: AnomalyRequest) -> tuple[PromptRef | ObjectName, int]:
        """The head the request names and the input size of the dense graph it reads."""
        if req.object_name is not None:
            self.require_graph("winclip", what="WinCLIP (object_name)", param="object_name")
            return ObjectName(req.object_name.strip()), self.clip.preprocess.size
        _, ref = await self.prompt(req.prompt_id or "", "anomaly")
        assert self.clip.anomaly is not None  # the gate checked the prompt's graphs
        return ref, self.clip.anomaly.image_size
