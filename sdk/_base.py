"""What `Client` and `AsyncClient` share: request building, the retry policy, parsing, chunking.

Only the transport loop (`httpx.Client.send` + `time.sleep` vs `httpx.AsyncClient.send` +
`asyncio.sleep`) is written twice, in `_client.py`; every decision it takes is made here.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from typing import TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from promptserve._constants import (
    DEFAULT_BASE_URL,
    INITIAL_RETRY_DELAY,
    MAX_RETRY_AFTER,
    MAX_RETRY_DELAY,
)
from promptserve._exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    _make_status_error,
    _parse_retry_after,
)
from promptserve._version import __version__
from promptserve.types import ClassifyResponse, ModelInfo

log = logging.getLogger("promptserve")

ModelT = TypeVar("ModelT", bound=BaseModel)
T = TypeVar("T")
Timeout = float | httpx.Timeout


class BaseClient:
    """Configuration and the transport-independent half of every request."""

    def __init__(
        self, base_url: str | None, *, api_key: str | None, timeout: Timeout, max_retries: int
    ):
        url = base_url or os.environ.get("PROMPTSERVE_BASE_URL") or DEFAULT_BASE_URL
        self.base_url = url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("PROMPTSERVE_API_KEY")
        self.timeout = timeout
        self.max_retries = max_retries
        self._model_info: ModelInfo | None = None  # cached by model_info(), used to downscale

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": f"promptserve-python/{__version__}"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _build_request(
        self,
        http: httpx.Client | httpx.AsyncClient,
        method: str,
        path: str,
        *,
        body: BaseModel | None = None,
        timeout: Timeout | None = None,
    ) -> httpx.Request:
        headers = self._headers()
        content = None
        if body is not None:
            content = body.model_dump_json().encode()
            headers["Content-Type"] = "application/json"
        return http.build_request(
            method,
            self.base_url + path,
            content=content,
            headers=headers,
            timeout=self.timeout if timeout is None else timeout,
        )

    def _delay_after_error(self, request: httpx.Request, attempt: int, exc: Exception) -> float:
        """Seconds to wait before retrying a transport error; raises when no retries are left."""
        if attempt >= self.max_retries:
            log.debug("%s %s: %r, no retries left", request.method, request.url, exc)
            if isinstance(exc, httpx.TimeoutException):
                raise APITimeoutError(request) from exc
            raise APIConnectionError(request=request, message=f"Connection error: {exc}") from exc
        delay = _retry_delay(attempt)
        log.debug("%s %s: %r, retrying in %.2f s", request.method, request.url, exc, delay)
        return delay

    def _delay_after_response(self, attempt: int, response: httpx.Response) -> float | None:
        """Seconds to wait before retrying `response`, or None when it is the final answer.

        A Retry-After above MAX_RETRY_AFTER makes the response final: the caller gets the error
        (with `retry_after`) now, rather than blocking for that long or retrying before the
        server is ready (see `_constants`).
        """
        if response.is_success:
            return None
        if attempt >= self.max_retries:
            log.debug("HTTP %d: no retries left", response.status_code)
            return None
        if not _should_retry(response):
            return None
        delay = _retry_delay(attempt, response)
        if delay > MAX_RETRY_AFTER:
            log.debug(
                "HTTP %d: Retry-After %.0f s exceeds MAX_RETRY_AFTER (%.0f s), not retrying",
                response.status_code, delay, MAX_RETRY_AFTER,
            )  # fmt: skip
            return None
        if _parse_retry_after(response.headers) is not None:
            # never before the server asked, and up to a quarter later at random: clients a
            # server refused together must not all come back in the same instant
            delay *= 1.0 + 0.25 * random.random()
        log.debug("HTTP %d: retrying %s in %.2f s", response.status_code, response.url, delay)
        return delay

    @staticmethod
    def _checked(response: httpx.Response) -> httpx.Response:
        if not response.is_success:
            raise _make_status_error(response)
        return response

    @staticmethod
    def _parse(response: httpx.Response, model: type[ModelT]) -> ModelT:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise APIError(
                f"{response.request.method} {response.request.url} returned a body that is not a "
                f"{model.__name__}: {exc}",
                response.request,
                body=response.text,
            ) from exc


def _should_retry(response: httpx.Response) -> bool:
    """Retry 408, 429 and 5xx, unless the server says otherwise in `x-should-retry`."""
    should = response.headers.get("x-should-retry")
    if should in ("true", "false"):
        log.debug("HTTP %d: x-should-retry=%s", response.status_code, should)
        return should == "true"
    if response.status_code in (408, 429) or response.status_code >= 500:
        log.debug("HTTP %d: retryable status", response.status_code)
        return True
    log.debug("HTTP %d: not retryable", response.status_code)
    return False


def _retry_delay(attempt: int, response: httpx.Response | None = None) -> float:
    """Retry-After when the response has one, else 0.5 s * 2**attempt minus up to 25 % jitter.

    Only the backoff is capped at MAX_RETRY_DELAY: Retry-After is the server's word and is
    returned as it is (`_delay_after_response` refuses waits above MAX_RETRY_AFTER).
    `attempt` counts from 0 (the first retry).
    """
    retry_after = _parse_retry_after(response.headers) if response is not None else None
    if retry_after is not None:
        return retry_after
    delay = min(INITIAL_RETRY_DELAY * 2.0**attempt, MAX_RETRY_DELAY)
    return delay * (1.0 - 0.25 * random.random())


def _split(items: Sequence[T], size: int) -> list[tuple[int, list[T]]]:
    """`items` as consecutive chunks of at most `size`, each with the offset of its first item."""
    return [(start, list(items[start : start + size])) for start in range(0, len(items), size)]


def _merge(responses: Sequence[ClassifyResponse], offsets: Sequence[int]) -> ClassifyResponse:
    """One response for all chunks, in input order, `results[i].index` re-numbered globally."""
    first = responses[0]
    results = []
    for response, offset in zip(responses, offsets, strict=True):
        if response.labels != first.labels:
            raise APIError("chunks of one classify call were answered with different class lists")
        results += [r.model_copy(update={"index": offset + r.index}) for r in response.results]
    results.sort(key=lambda r: r.index)
    return first.model_copy(update={"results": results})
