"""The prompt registry: `GET/POST /v1/prompts`, `GET/DELETE /v1/prompts/{prompt_id}`."""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import ClassVar

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from promptserve.serving.api import ERRORS, Route, json_body
from promptserve.serving.deployments.gateway import Gateway
from promptserve.serving.errors import InvalidInput
from promptserve.serving.inputs import read_body
from promptserve.serving.store import check_prompt_id
from promptserve.types import PromptInfo, PromptList, RegisterPromptRequest

_REGISTER_BODY = json_body(RegisterPromptRequest)


class PromptRoutes(Gateway):
    ROUTES: ClassVar[tuple[Route, ...]] = (
        Route(
            "GET",
            "/v1/prompts",
            "list_prompts",
            {"response_model": PromptList, "responses": ERRORS},
        ),
        Route(
            "GET",
            "/v1/prompts/{prompt_id}",
            "get_prompt",
            {"response_model": PromptInfo, "responses": ERRORS},
        ),
        Route(
            "DELETE",
            "/v1/prompts/{prompt_id}",
            "delete_prompt",
            {"status_code": 204, "responses": ERRORS},
        ),
        Route(
            "POST",
            "/v1/prompts",
            "register_prompt",
            {
                "status_code": 201,
                "response_model": PromptInfo,
                "responses": ERRORS,
                "openapi_extra": _REGISTER_BODY,
            },
        ),
    )

    async def list_prompts(self, request: Request) -> PromptList:
        async def run() -> PromptList:
            self.authorize(request)
            return PromptList(data=await asyncio.to_thread(self.store.list))

        return await self.observe("prompts.list", run)

    async def get_prompt(self, prompt_id: str, request: Request) -> PromptInfo:
        async def run() -> PromptInfo:
            self.authorize(request)
            return await asyncio.to_thread(self.store.info, check_prompt_id(prompt_id))

        return await self.observe("prompts.get", run)

    async def delete_prompt(self, prompt_id: str, request: Request) -> Response:
        async def run() -> Response:
            self.authorize(request, "admin")
            await asyncio.to_thread(self.store.delete, check_prompt_id(prompt_id))
            self.forget(prompt_id)
            return Response(status_code=204)

        return await self.observe("prompts.delete", run)

    async def register_prompt(self, request: Request) -> JSONResponse:
        async def run() -> JSONResponse:
            self.authorize(request, "admin")
            body = await read_body(request, self.config.limits)
            try:
                req = RegisterPromptRequest.model_validate_json(body)
            except ValidationError as exc:
                raise InvalidInput.from_validation(
                    exc, prefix="invalid registration body: "
                ) from None
            try:
                tensors = base64.b64decode(req.tensors, validate=True) if req.tensors else None
            except (binascii.Error, ValueError):
                raise InvalidInput("`tensors` is not valid base64", param="tensors") from None
            info = await self.register(req.manifest, tensors, req.prompt_id)
            return JSONResponse(info.model_dump(mode="json"), status_code=201)

        return await self.observe("prompts.register", run)
