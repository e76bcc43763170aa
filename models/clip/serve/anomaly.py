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
from promptserve.serving.api import ERRORS, Route, images_body
from promptserve.serving.config import LimitsConfig
from promptserve.serving.errors import InvalidInput
from promptserve.serving.metrics import metrics
from promptserve.serving.store import PromptRef
from promptserve.types import AnomalyRequest, AnomalyResponse

BODY = images_body(AnomalyRequest)


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
            maps = map_sizes(sizes, req.max_map_side, self.config.limits)
            call = AnomalyCall(crops=crops, sizes=maps, head=head)
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


def map_sizes(
    sizes: list[tuple[int, int]], max_side: int | None, limits: LimitsConfig
) -> tuple[tuple[int, int], ...]:
    """The (height, width) of each map a response returns: the image's, or scaled so the
    longer side is `max_side`; their pixels together within `limits.max_output_pixels` (maps
    of large photos at the original size used to make responses of hundreds of MB)."""
    out = []
    for h, w in sizes:
        scale = min(1.0, max_side / max(h, w)) if max_side else 1.0
        out.append((max(1, round(h * scale)), max(1, round(w * scale))))
    pixels = sum(h * w for h, w in out)
    if pixels > limits.max_output_pixels:
        raise InvalidInput(
            f"the maps of these images hold {pixels / 1e6:.1f} MP, above the "
            f"{limits.max_output_pixels / 1e6:.1f} MP one response may carry: pass "
            "`max_map_side` (e.g. 1024) or send fewer images per request",
            param="max_map_side",
        )
    return tuple(out)
