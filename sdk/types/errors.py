"""The error body every 4xx/5xx carries, so clients can branch on `type` rather than prose."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ErrorType = Literal[
    "invalid_input",
    "prompt_not_found",
    "model_not_found",
    "not_found",
    "method_not_allowed",
    "backbone_mismatch",
    "index_not_found",
    "index_mismatch",
    "conflict",
    "authentication_error",
    "permission_denied",
    "payload_too_large",
    "overloaded",
    "backend_unavailable",
    "internal_error",
]


class ErrorDetail(BaseModel):
    type: ErrorType
    message: str
    param: str | None = None
    code: str | None = Field(
        None, description="OpenAI's error code, on the OpenAI-compatible routes."
    )


class ErrorBody(BaseModel):
    error: ErrorDetail
