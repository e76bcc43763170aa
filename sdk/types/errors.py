"""The error body every 4xx/5xx carries, so clients can branch on `type` rather than prose."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

ErrorType = Literal[
    "invalid_input",
    "prompt_not_found",
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


class ErrorBody(BaseModel):
    error: ErrorDetail
