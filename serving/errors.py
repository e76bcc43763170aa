"""Server-side errors: each maps to one HTTP status and one `ErrorBody` type, in one handler."""

from __future__ import annotations

from typing import ClassVar

from promptserve.models.artifacts import first_validation_error
from promptserve.types.errors import ErrorBody, ErrorDetail, ErrorType


class ServeError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[ErrorType] = "internal_error"

    def __init__(
        self, message: str, *, param: str | None = None, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict:
        return ErrorBody(
            error=ErrorDetail(type=self.type, message=self.message, param=self.param)
        ).model_dump()

    def __reduce__(self):  # survive Ray's pickling between replicas with kwargs intact
        return (_rebuild, (type(self), self.message, self.param, self.headers))


def _rebuild(cls, message, param, headers):
    return cls(message, param=param, headers=headers)


class InvalidInput(ServeError):
    status, type = 400, "invalid_input"

    @classmethod
    def from_validation(cls, exc, *, prefix: str = "", skip: int = 0) -> InvalidInput:
        """The first problem of a pydantic/FastAPI validation error, named by its location."""
        where, msg = first_validation_error(exc, skip=skip)
        return cls(f"{prefix}{where}: {msg}", param=where)


class PayloadTooLarge(ServeError):
    status, type = 413, "payload_too_large"


class PromptNotFound(ServeError):
    status, type = 404, "prompt_not_found"


class ModelNotFound(ServeError):
    """An OpenAI-compatible route's `model` names nothing this server runs."""

    status, type = 404, "model_not_found"

    def body(self) -> dict:
        body = super().body()
        body["error"]["code"] = "model_not_found"
        return body


class BackboneMismatch(ServeError):
    status, type = 409, "backbone_mismatch"


class IndexNotFound(ServeError):
    status, type = 404, "index_not_found"


class IndexMismatch(ServeError):
    """An index's vectors came from another backbone or prompt artifact than the request's."""

    status, type = 409, "index_mismatch"


class Conflict(ServeError):
    """The request would replace something that exists (an index of that name)."""

    status, type = 409, "conflict"


class AuthenticationError(ServeError):
    status, type = 401, "authentication_error"


class PermissionDenied(ServeError):
    status, type = 403, "permission_denied"


class Overloaded(ServeError):
    status, type = 503, "overloaded"

    def __init__(self, message: str, *, retry_after_s: int = 1):
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})

    def __reduce__(self):
        return (Overloaded, (self.message,), {"headers": self.headers})


class BackendUnavailable(ServeError):
    """The inference server behind an engine (Triton) is down, missing a model, or too slow."""

    status, type = 503, "backend_unavailable"

    def __init__(self, message: str, *, retry_after_s: int = 2):
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})

    def __reduce__(self):
        return (BackendUnavailable, (self.message,), {"headers": self.headers})
