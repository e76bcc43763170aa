"""`GET /healthz`, `GET /readyz`, `GET /v1/models`: is the process up, can it serve, what it
serves."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from promptserve.serving.api import ERRORS, Route
from promptserve.serving.deployments.gateway import Gateway
from promptserve.types import ModelInfo


class HealthRoutes(Gateway):
    ROUTES: ClassVar[tuple[Route, ...]] = (
        Route("GET", "/healthz", "healthz", {"include_in_schema": False}),
        Route("GET", "/readyz", "readyz", {"include_in_schema": False}),
        Route("GET", "/v1/models", "models", {"response_model": ModelInfo, "responses": ERRORS}),
    )

    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    async def readyz(self) -> Response:
        """503 until the configured prompts are preloaded (a failed preload is retried and
        said here), and while the encoder cannot serve."""
        if self.preload_error is not None:
            return _not_ready(f"preloading prompts failed ({self.preload_error}); retrying")
        if not self.ready.is_set():
            return _not_ready("starting")
        try:
            await asyncio.wait_for(self.encoder.call("ready"), timeout=5)
        except Exception:  # noqa: BLE001 - whatever the failure, the answer is "not ready"
            return _not_ready("encoder unavailable")
        return JSONResponse({"status": "ready"})

    async def models(self, request: Request) -> ModelInfo:
        self.authorize(request)
        return await self.served_models(self.model_info())


def _not_ready(status: str) -> JSONResponse:
    return JSONResponse({"status": status}, status_code=503, headers={"Retry-After": "1"})
