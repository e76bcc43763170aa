"""The SDK's one exception tree.

    PromptServeError
    └── APIError                      message, request, body
        ├── APIStatusError            status_code, response, request_id, error_type, param
        │   ├── InvalidInput          400, 413, 415, 422; also raised client-side (status_code None)
        │   │   ├── BackboneMismatch  409: the artifact was built for another backbone
        │   │   ├── IndexMismatch     409: the index was built with another backbone/prompt
        │   │   └── ConflictError     409: it exists (an index of that name)
        │   ├── AuthError             401, 403
        │   ├── NotFoundError         404
        │   │   ├── PromptNotFound    404: no such prompt
        │   │   └── IndexNotFound     404: no such index
        │   ├── ServerOverloaded      503 (and 429), with `retry_after`
        │   └── InternalServerError   other 5xx
        └── APIConnectionError        no response at all
            └── APITimeoutError

The error body's `type` (see `promptserve.types.ErrorType`) picks the class first, the HTTP
status second, so a 400 with type `backbone_mismatch` is a `BackboneMismatch` too.
"""

from __future__ import annotations

import email.utils
import math
import time
from typing import Any

import httpx

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthError",
    "BackboneMismatch",
    "ConflictError",
    "IndexMismatch",
    "IndexNotFound",
    "InternalServerError",
    "InvalidInput",
    "NotFoundError",
    "PromptNotFound",
    "PromptServeError",
    "ServerOverloaded",
]


class PromptServeError(Exception):
    """Base of every exception the SDK raises."""


class APIError(PromptServeError):
    """A request failed.

    Attributes:
        message: What went wrong, from the server's error body when there is one.
        request: The request that failed; None for errors raised before anything was sent.
        body: The decoded JSON error body (or the raw text), when a response came back.
    """

    def __init__(self, message: str, request: httpx.Request | None = None, *, body: object = None):
        super().__init__(message)
        self.message = message
        self.request = request
        self.body = body


class APIStatusError(APIError):
    """The server answered with a 4xx/5xx status.

    Attributes:
        status_code: The HTTP status; None for `InvalidInput` raised client-side.
        response: The `httpx.Response`; None for client-side errors.
        request_id: The `x-request-id` response header, to quote in bug reports.
        error_type: `error.type` of the body, e.g. `prompt_not_found` (see `ErrorType`).
        param: `error.param` of the body: the request field at fault, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        response: httpx.Response | None = None,
        body: object = None,
        error_type: str | None = None,
        param: str | None = None,
    ):
        super().__init__(message, _request_of(response), body=body)
        self.response = response
        self.status_code: int | None = response.status_code if response is not None else None
        self.request_id = response.headers.get("x-request-id") if response is not None else None
        self.error_type = error_type
        self.param = param

    def __str__(self) -> str:
        if self.status_code is None:
            return self.message
        rid = f", request_id={self.request_id}" if self.request_id else ""
        return f"{self.status_code} {self.error_type or 'error'}: {self.message}{rid}"


class InvalidInput(APIStatusError):
    """The request was malformed: bad images, unknown options, payload too large.

    Also raised before sending for errors the SDK can see itself (an unsupported image type,
    both `prompt_id` and `labels`, an empty image list); those have `status_code` and
    `response` None, and `param` naming the argument at fault.
    """


class BackboneMismatch(InvalidInput):
    """The prompt artifact was built for another backbone than the one served (409)."""


class IndexMismatch(InvalidInput):
    """The index was built with another backbone or prompt artifact than this request would
    use (409): its vectors and the query's would not be comparable."""


class ConflictError(InvalidInput):
    """The request would replace something that exists, e.g. an index of that name (409)."""


class AuthError(APIStatusError):
    """Missing or wrong API key (401), or the key may not do this (403)."""


class NotFoundError(APIStatusError):
    """404 for something other than a prompt, e.g. a wrong URL or route (check `base_url`)."""


class PromptNotFound(NotFoundError):
    """No prompt is registered under that id (404 with error type `prompt_not_found`)."""


class IndexNotFound(NotFoundError):
    """No index exists under that id (404 with error type `index_not_found`)."""


class ServerOverloaded(APIStatusError):
    """The server shed load (503, or 429 from a proxy); raised once the retries are used up,
    or at once when its Retry-After asks for more than MAX_RETRY_AFTER (60 s): the client waits
    as long as the server says, but does not block a call for minutes.

    Attributes:
        retry_after: Seconds the server asked to wait (the Retry-After header), if it said.
    """

    def __init__(self, message: str, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.retry_after = (
            _parse_retry_after(self.response.headers) if self.response is not None else None
        )


class InternalServerError(APIStatusError):
    """The server failed (5xx other than 503)."""


class APIConnectionError(APIError):
    """No response came back: the server is unreachable or the connection broke."""

    def __init__(self, *, request: httpx.Request, message: str = "Connection error."):
        super().__init__(message, request)


class APITimeoutError(APIConnectionError):
    """The request timed out (see the client's and the call's `timeout=`)."""

    def __init__(self, request: httpx.Request):
        super().__init__(request=request, message="Request timed out.")


_BY_TYPE: dict[str, type[APIStatusError]] = {
    "invalid_input": InvalidInput,
    "payload_too_large": InvalidInput,
    "backbone_mismatch": BackboneMismatch,
    "authentication_error": AuthError,
    "permission_denied": AuthError,
    "prompt_not_found": PromptNotFound,
    "index_not_found": IndexNotFound,
    "index_mismatch": IndexMismatch,
    "conflict": ConflictError,
    "not_found": NotFoundError,
    "overloaded": ServerOverloaded,
    "internal_error": InternalServerError,
}
_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: InvalidInput,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    409: BackboneMismatch,
    413: InvalidInput,
    415: InvalidInput,
    422: InvalidInput,
    429: ServerOverloaded,
    503: ServerOverloaded,
}


def _make_status_error(response: httpx.Response) -> APIStatusError:
    """Map an error response to its exception class (body `error.type` first, then status)."""
    try:
        body: object = response.json()
    except ValueError:
        body = response.text or None
    detail = body.get("error") if isinstance(body, dict) else None
    detail = detail if isinstance(detail, dict) else {}
    error_type = detail.get("type") if isinstance(detail.get("type"), str) else None
    message = detail.get("message") or response.text or response.reason_phrase or "error"
    status = response.status_code
    cls = _BY_TYPE.get(error_type or "") or _BY_STATUS.get(status)
    if cls is None:
        cls = InternalServerError if status >= 500 else APIStatusError
    return cls(
        str(message), response=response, body=body, error_type=error_type, param=detail.get("param")
    )


def _request_of(response: httpx.Response | None) -> httpx.Request | None:
    try:
        return response.request if response is not None else None
    except RuntimeError:  # a Response built by hand, without a request
        return None


def _parse_retry_after(headers: httpx.Headers) -> float | None:
    """Retry-After as seconds from now (delta-seconds or an HTTP date); None if absent/garbled."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
