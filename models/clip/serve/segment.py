"""`POST /v1/segment`: open-vocabulary segmentation (MaskCLIP, SCLIP, ClearCLIP) with free
labels or a registered text prompt."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from fastapi import Request
from fastapi.responses import JSONResponse

from promptserve.models.clip.bundle import SegmentGraphSpec
from promptserve.models.clip.methods.segment import (
    DEFAULTS,
    MAX_LONG_SIDE,
    cut_windows,
    window_boxes,
    window_grid,
)
from promptserve.models.clip.serve.base import BATCH_HEADER, ClipGateway, templates
from promptserve.models.clip.serve.calls import SegmentCall, Vocabulary
from promptserve.models.clip.serve.inputs import decode_for_segment, parse_segment
from promptserve.serving.api import ERRORS, Route, images_body
from promptserve.serving.config import LimitsConfig
from promptserve.serving.errors import InvalidInput
from promptserve.serving.metrics import metrics
from promptserve.serving.store import PromptRef
from promptserve.types import SegmentRequest, SegmentResponse

BODY = images_body(SegmentRequest)


class SegmentRoutes(ClipGateway):
    ROUTES: ClassVar[tuple[Route, ...]] = (
        Route(
            "POST",
            "/v1/segment",
            "segment",
            {"response_model": SegmentResponse, "responses": ERRORS, "openapi_extra": BODY},
        ),
    )

    async def segment(self, request: Request) -> JSONResponse:
        return await self.task_route("segment", request, parse_segment, self._segment)

    async def _segment(self, req: SegmentRequest, blobs: list[bytes]) -> JSONResponse:
        method: str = req.method or next(iter(self.clip.segment), "sclip")
        self.require_graph(f"segment_{method}", what=f"{method} segmentation", param="method")
        spec = self.clip.segment[method]
        vocabulary, labels = await self._vocabulary(req)
        defaults = DEFAULTS[method]
        short_side = req.short_side or defaults.short_side
        stride = req.stride or spec.image_size // 2
        if stride > spec.image_size:
            raise InvalidInput(
                f"stride {stride} leaves gaps between {spec.image_size}-pixel windows",
                param="stride",
            )
        # each image's resized long side is at least min(short_side, 2048): a lower bound on its
        # windows refuses a stride-1 request before any image is decoded
        fewest = window_grid(min(short_side, MAX_LONG_SIDE), spec.image_size, stride) * len(blobs)
        _check_windows(fewest, self.config.limits, at_least=True)
        options = {
            "method": method,
            "logit_scale": req.logit_scale or defaults.logit_scale,
            "prob_threshold": req.prob_threshold,
            "return_scores": req.return_scores,
            "vocabulary": vocabulary,
        }
        n = len(blobs)
        async with self.admitted(n):
            calls = await asyncio.to_thread(
                _segment_calls, blobs, spec, short_side, stride, self.config.limits, options,
                self.fill,
            )  # fmt: skip
            parts = await asyncio.gather(*(self.encoder.call("segment", c) for c in calls))
        metrics().images.inc(n)
        results = []
        for i, part in enumerate(parts):
            result = {"index": i, **part["result"]}
            if result.get("scores") is not None:
                result["scores"] = [{**s, "label": labels[s["index"]]} for s in result["scores"]]
            results.append(result)
        body = SegmentResponse(
            prompt_id=req.prompt_id,
            method=method,
            backbone=self.bundle.backbone_id,
            labels=labels,
            results=results,
        )
        header = ",".join(str(b) for p in parts for b in p["batch_images"])
        return JSONResponse(body.model_dump(mode="json"), headers={BATCH_HEADER: header})

    async def _vocabulary(self, req: SegmentRequest) -> tuple[PromptRef | Vocabulary, list[str]]:
        """What the encoder encodes and the class names a label map indexes."""
        if req.prompt_id is not None:
            info, ref = await self.prompt(req.prompt_id, "segment")
            return ref, info.classnames or []
        preset = req.templates if req.templates is not None else "imagenet80"
        if isinstance(preset, list) and len(preset) == 1 and "{}" not in preset[0]:
            preset = preset[0]  # a preset name sent as a multipart field
        groups = tuple(
            (g.strip(),) if isinstance(g, str) else tuple(n.strip() for n in g)
            for g in req.labels or ()
        )
        names = sum(map(len, groups))
        return Vocabulary(groups, templates(preset, names, self.config.limits)), [
            g[0] for g in groups
        ]


def _check_windows(count: int, limits: LimitsConfig, *, at_least: bool) -> None:
    if count > limits.max_segment_windows:
        raise InvalidInput(
            f"{'at least ' if at_least else ''}{count} sliding windows in this request, above "
            f"the limit of {limits.max_segment_windows}: raise `stride`, lower `short_side`, or "
            "send fewer images per request",
            param="stride",
        )


def _segment_calls(
    blobs: list[bytes],
    spec: SegmentGraphSpec,
    short_side: int,
    stride: int,
    limits: LimitsConfig,
    options: dict[str, Any],
    fill: tuple[int, ...],
) -> list[SegmentCall]:
    """Per image: resized, cut into the graph's windows (SCLIP's placement); the windows of
    the whole request are counted before any is cut."""
    calls, total = [], 0
    for i, blob in enumerate(blobs):
        image, original = decode_for_segment(blob, i, short_side, limits)
        boxes = window_boxes(image.shape[0], image.shape[1], spec.image_size, stride)
        total += len(boxes)
        _check_windows(total, limits, at_least=False)
        windows = cut_windows(image, boxes, spec.image_size, fill)
        calls.append(
            SegmentCall(
                windows=windows,
                boxes=tuple(boxes),
                resized=(image.shape[0], image.shape[1]),
                original=original,
                **options,
            )
        )
    return calls
