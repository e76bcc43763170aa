"""Generation calls of `Client` and `AsyncClient`: `generate`, `chat` and `models`.

The routes are OpenAI's (`/v1/completions`, `/v1/chat/completions`, as vLLM serves them), so
the bodies and answers are OpenAI's shapes (`promptserve.types.generation`), and a stream is
OpenAI's server-sent events: `data: <chunk JSON>` per step, then `data: [DONE]`.

A stream is read incrementally from httpx's streaming response, one event as soon as its
blank line arrives. Retries (the client's `_request`, with `stream=True`) happen only before
the first byte of the body, i.e. on a refused or failed request; once events flow, nothing is
ever resent, because the server has already spent generation on it. Closing a stream (leaving
its `with` block, `close()`, or dropping it) closes the HTTP response, so the server sees the
disconnect and frees the request's engine row at once.

As in `_retrieval.py`, bodies are planned and events decoded by one code path (the functions
and `_SSEDecoder` at the top); only the reading loop is written per client.
"""

from __future__ import annotations

import json
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Generator,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, Generic, Literal, TypeVar, overload

import httpx
from pydantic import BaseModel, ValidationError

from promptserve._base import Timeout
from promptserve._exceptions import APIConnectionError, APIError, APITimeoutError, InvalidInput
from promptserve.types import ModelInfo
from promptserve.types.generation import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    Completion,
    CompletionRequest,
    GenModelList,
)

__all__ = ["AsyncGenerationMixin", "AsyncStream", "GenerationMixin", "Stream"]

ChunkT = TypeVar("ChunkT", bound=BaseModel)  # Completion or ChatCompletionChunk
MessageInput = ChatMessage | Mapping[str, Any]
DONE = "[DONE]"


# -- planning and decoding, shared by the twins -------------------------------------------------


def _invalid(exc: ValidationError) -> InvalidInput:
    first = exc.errors()[0] if exc.errors() else None
    param = ".".join(str(p) for p in first["loc"]) if first else None
    return InvalidInput(str(exc), param=param or None)


def _completion_body(prompt: str, **fields: Any) -> CompletionRequest:
    if not isinstance(prompt, str):
        raise InvalidInput("`prompt` must be a string", param="prompt")
    try:
        return CompletionRequest(prompt=prompt, **fields)
    except ValidationError as exc:
        raise _invalid(exc) from exc


def _chat_body(messages: Sequence[MessageInput], **fields: Any) -> ChatCompletionRequest:
    if isinstance(messages, (str, Mapping)):  # one message where a list was meant
        raise InvalidInput("`messages` must be a list of messages", param="messages")
    parsed = []
    for i, message in enumerate(messages):
        try:
            parsed.append(
                message
                if isinstance(message, ChatMessage)
                else ChatMessage.model_validate(dict(message))
            )
        except (ValidationError, TypeError, ValueError) as exc:  # ValueError: not a mapping
            raise InvalidInput(f"messages[{i}]: {exc}", param=f"messages[{i}]") from exc
    try:
        return ChatCompletionRequest(messages=parsed, **fields)
    except ValidationError as exc:
        raise _invalid(exc) from exc


def _selection_note(chunk: Completion | ChatCompletion | ChatCompletionChunk) -> str | None:
    """One line on which prompt of an IDP pool ran, for the CLI; None for other prompts."""
    s = chunk.selection
    if s is None:
        return None
    return f"{chunk.model}: pool prompt #{s.index} chosen (score {s.score:.4f})"


class _SSEDecoder:
    """Server-sent events from lines, per the WHATWG `text/event-stream` rules that OpenAI's
    and vLLM's streams follow: `data:` lines accumulate (joined by newlines) until a blank
    line dispatches the event; lines starting with `:` are comments (keep-alive pings);
    `event:` names the event; other fields (`id`, `retry`) are read and ignored.

    Follows openai/openai-python src/openai/_streaming.py::SSEDecoder.decode (the field rules
    and the one optional space after the colon).
    """

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event: str | None = None

    def feed(self, line: str) -> tuple[str | None, str] | None:
        """Take one line (without its line ending); an `(event, data)` pair when it ends one."""
        if not line:
            if not self._data and self._event is None:
                return None
            event = (self._event, "\n".join(self._data))
            self._data, self._event = [], None
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None


def _decode(
    event: tuple[str | None, str], model: type[ChunkT], request: httpx.Request
) -> ChunkT | None:
    """The chunk an event carries; None for the closing `[DONE]`. An error event (an `error`
    event, or a JSON object with an `error` key, as OpenAI and vLLM send when generation
    fails after the stream started) raises `APIError` with the server's message."""
    name, data = event
    if data == DONE:
        return None
    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise APIError(f"a stream event is not JSON: {data[:200]!r}", request, body=data) from exc
    if name == "error" or (isinstance(payload, dict) and "error" in payload):
        detail = payload.get("error") if isinstance(payload, dict) else None
        message = detail.get("message") if isinstance(detail, dict) else None
        raise APIError(f"the stream failed: {message or data[:200]}", request, body=payload)
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise APIError(
            f"a stream event is not a {model.__name__}: {exc}", request, body=payload
        ) from exc


def _transport_error(request: httpx.Request, exc: httpx.TransportError) -> APIConnectionError:
    """A connection that broke (or timed out) mid-stream: not retried, since the server had
    already generated part of the answer."""
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(request)
    return APIConnectionError(request=request, message=f"the stream broke: {exc}")


def _truncated(request: httpx.Request) -> APIConnectionError:
    return APIConnectionError(request=request, message=f"the stream ended before {DONE}")


# -- streams ------------------------------------------------------------------------------------


class Stream(Generic[ChunkT]):
    """The chunks of one streamed call, read as they arrive; iterate it once.

    Use it in a `with` block (or call `close()`) to stop early: that closes the response,
    and the server stops generating for it. Iterating to the end closes it too.

    Attributes:
        response: The streaming `httpx.Response` (headers, e.g. `x-request-id`).

    Raises (while iterating):
        APIError: the server reported a failure inside the stream, or sent a malformed event.
        APIConnectionError: the connection broke, or closed before `[DONE]`; not retried.
    """

    def __init__(self, response: httpx.Response, model: type[ChunkT]):
        self.response = response
        self._model = model
        self._iterator = self._chunks()

    def _chunks(self) -> Generator[ChunkT, None, None]:
        request = self.response.request
        decoder = _SSEDecoder()
        try:
            for line in self.response.iter_lines():
                event = decoder.feed(line)
                if event is None:
                    continue
                chunk = _decode(event, self._model, request)
                if chunk is None:
                    return
                yield chunk
            event = decoder.feed("")  # a last event without its blank line
            if event is not None and _decode(event, self._model, request) is None:
                return
            raise _truncated(request)
        except httpx.TransportError as exc:
            raise _transport_error(request, exc) from exc
        finally:
            self.response.close()

    def __iter__(self) -> Iterator[ChunkT]:
        return self

    def __next__(self) -> ChunkT:
        return next(self._iterator)

    def close(self) -> None:
        """Stop reading and close the response (the server sees the disconnect)."""
        self._iterator.close()
        self.response.close()

    def __enter__(self) -> Stream[ChunkT]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncStream(Generic[ChunkT]):
    """`Stream`, read with `async for`. Use `async with` (or `await close()`) to stop early:
    an async generator dropped mid-way is only closed later by the event loop, so without
    them the server may go on generating for a while."""

    def __init__(self, response: httpx.Response, model: type[ChunkT]):
        self.response = response
        self._model = model
        self._iterator = self._chunks()

    async def _chunks(self) -> AsyncGenerator[ChunkT, None]:
        request = self.response.request
        decoder = _SSEDecoder()
        try:
            async for line in self.response.aiter_lines():
                event = decoder.feed(line)
                if event is None:
                    continue
                chunk = _decode(event, self._model, request)
                if chunk is None:
                    return
                yield chunk
            event = decoder.feed("")
            if event is not None and _decode(event, self._model, request) is None:
                return
            raise _truncated(request)
        except httpx.TransportError as exc:
            raise _transport_error(request, exc) from exc
        finally:
            await self.response.aclose()

    def __aiter__(self) -> AsyncIterator[ChunkT]:
        return self

    async def __anext__(self) -> ChunkT:
        return await self._iterator.__anext__()

    async def close(self) -> None:
        """Stop reading and close the response (the server sees the disconnect)."""
        await self._iterator.aclose()
        await self.response.aclose()

    async def __aenter__(self) -> AsyncStream[ChunkT]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


# -- the twins ----------------------------------------------------------------------------------


class GenerationMixin:
    """Generation methods of `Client`."""

    _request: Callable[..., httpx.Response]
    _parse: Callable[..., Any]
    model_info: Callable[..., ModelInfo]

    def models(self, *, timeout: Timeout | None = None) -> GenModelList:
        """The ids `generate` and `chat` take as `model`: the registered generation prompts
        (soft prompts, IDP pools, hard prompts) and the bare backbone (`GET /v1/models`)."""
        return GenModelList(data=self.model_info(timeout=timeout).data or [])

    @overload
    def generate(
        self, prompt: str, *, model: str, max_tokens: int | None = ...,
        temperature: float | None = ..., top_p: float | None = ..., seed: int | None = ...,
        stop: str | Sequence[str] | None = ..., stream: Literal[False] = ...,
        timeout: Timeout | None = ...,
    ) -> Completion: ...  # fmt: skip
    @overload
    def generate(
        self, prompt: str, *, model: str, max_tokens: int | None = ...,
        temperature: float | None = ..., top_p: float | None = ..., seed: int | None = ...,
        stop: str | Sequence[str] | None = ..., stream: Literal[True],
        timeout: Timeout | None = ...,
    ) -> Stream[Completion]: ...  # fmt: skip
    def generate(
        self,
        prompt: str,
        *,
        model: str,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        stream: bool = False,
        timeout: Timeout | None = None,
    ) -> Completion | Stream[Completion]:
        """Continue `prompt` with the generation prompt `model` (`POST /v1/completions`).

        Args:
            prompt: The text to continue.
            model: An id from `models()`: a registered soft prompt, IDP pool or hard prompt,
                or the bare backbone.
            max_tokens: New tokens at most (the server's limit otherwise).
            temperature: 0 is greedy; the server's default is 1.
            top_p: Nucleus sampling mass; default 1.
            seed: Makes sampling repeatable for this request.
            stop: Up to 4 strings that end the text (not included).
            stream: Return a `Stream` of `Completion` chunks, each with the new text in
                `choices[0].text`, as the server produces them.
            timeout: Seconds per request (per read, for a stream), overriding the client's.

        Returns:
            The `Completion` (for an IDP pool, `selection` says which prompt ran), or with
            `stream=True` a `Stream` whose first chunk carries `selection`.

        Raises:
            InvalidInput: Bad arguments, a prompt longer than the context, `max_tokens` above
                the limit (400).
            NotFoundError: No model by that id (404, `model_not_found`).
            ServerOverloaded: The generator is full after the retries (503).

        Example:
            >>> with client.generate("Once upon", model="peft-demo", stream=True) as chunks:
            ...     for chunk in chunks:
            ...         print(chunk.choices[0].text, end="")
        """
        body = _completion_body(
            prompt, model=model, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
            seed=seed, stop=list(stop) if isinstance(stop, (list, tuple)) else stop,
            stream=stream,
        )  # fmt: skip
        if stream:
            return Stream(self._open(body, "/v1/completions", timeout), Completion)
        response = self._request("POST", "/v1/completions", body=body, timeout=timeout)
        parsed: Completion = self._parse(response, Completion)
        return parsed

    @overload
    def chat(
        self, messages: Sequence[MessageInput], *, model: str, max_tokens: int | None = ...,
        temperature: float | None = ..., top_p: float | None = ..., seed: int | None = ...,
        stop: str | Sequence[str] | None = ..., stream: Literal[False] = ...,
        timeout: Timeout | None = ...,
    ) -> ChatCompletion: ...  # fmt: skip
    @overload
    def chat(
        self, messages: Sequence[MessageInput], *, model: str, max_tokens: int | None = ...,
        temperature: float | None = ..., top_p: float | None = ..., seed: int | None = ...,
        stop: str | Sequence[str] | None = ..., stream: Literal[True],
        timeout: Timeout | None = ...,
    ) -> Stream[ChatCompletionChunk]: ...  # fmt: skip
    def chat(
        self,
        messages: Sequence[MessageInput],
        *,
        model: str,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        stream: bool = False,
        timeout: Timeout | None = None,
    ) -> ChatCompletion | Stream[ChatCompletionChunk]:
        """Answer a conversation with the generation prompt `model`
        (`POST /v1/chat/completions`); the backbone's chat template applies.

        Args:
            messages: `ChatMessage`s or dicts such as `{"role": "user", "content": "Hi"}`.
            stream: Return a `Stream` of `ChatCompletionChunk`s: the first has
                `delta.role == "assistant"`, each then the new text in `delta.content`.

        The other arguments, the errors and `selection` are as in `generate`.
        """
        body = _chat_body(
            messages, model=model, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
            seed=seed, stop=list(stop) if isinstance(stop, (list, tuple)) else stop,
            stream=stream,
        )  # fmt: skip
        if stream:
            return Stream(self._open(body, "/v1/chat/completions", timeout), ChatCompletionChunk)
        response = self._request("POST", "/v1/chat/completions", body=body, timeout=timeout)
        parsed: ChatCompletion = self._parse(response, ChatCompletion)
        return parsed

    def _open(self, body: BaseModel, path: str, timeout: Timeout | None) -> httpx.Response:
        """The response of a streamed call, its headers read and its body not yet."""
        return self._request("POST", path, body=body, timeout=timeout, stream=True)


class AsyncGenerationMixin:
    """Generation methods of `AsyncClient`: those of `Client`, awaitable; a stream is an
    `AsyncStream` (`async for`, `async with`)."""

    _request: Callable[..., Any]
    _parse: Callable[..., Any]
    model_info: Callable[..., Any]

    async def models(self, *, timeout: Timeout | None = None) -> GenModelList:
        """`Client.models`, awaitable."""
        info: ModelInfo = await self.model_info(timeout=timeout)
        return GenModelList(data=info.data or [])

    @overload
    async def generate(
        self, prompt: str, *, model: str, max_tokens: int | None = ...,
        temperature: float | None = ..., top_p: float | None = ..., seed: int | None = ...,
        stop: str | Sequence[str] | None = ..., stream: Literal[False] = ...,
        timeout: Timeout | None = ...,
    ) -> Completion: ...  # fmt: skip
    @overload
    async def generate(
        self, prompt: str, *, model: str, max_tokens: int | None = ...,
        temperature: float | None = ..., top_p: float | None = ..., seed: int | None = ...,
        stop: str | Sequence[str] | None = ..., stream: Literal[True],
        timeout: Timeout | None = ...,
    ) -> AsyncStream[Completion]: ...  # fmt: skip
    async def generate(
        self,
        prompt: str,
        *,
        model: str,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        stream: bool = False,
        timeout: Timeout | None = None,
    ) -> Completion | AsyncStream[Completion]:
        """`Client.generate`, awaitable; with `stream=True` an `AsyncStream` (the request is
        sent, and refusals raised, by the `await`)."""
        body = _completion_body(
            prompt, model=model, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
            seed=seed, stop=list(stop) if isinstance(stop, (list, tuple)) else stop,
            stream=stream,
        )  # fmt: skip
        if stream:
            return AsyncStream(await self._open(body, "/v1/completions", timeout), Completion)
        response = await self._request("POST", "/v1/completions", body=body, timeout=timeout)
        parsed: Completion = self._parse(response, Completion)
        return parsed

    @overload
    async def chat(
        self, messages: Sequence[MessageInput], *, model: str, max_tokens: int | None = ...,
        temperature: float | None = ..., top_p: float | None = ..., seed: int | None = ...,
        stop: str | Sequence[str] | None = ..., stream: Literal[False] = ...,
        timeout: Timeout | None = ...,
    ) -> ChatCompletion: ...  # fmt: skip
    @overload
    async def chat(
        self, messages: Sequence[MessageInput], *, model: str, max_tokens: int | None = ...,
        temperature: float | None = ..., top_p: float | None = ..., seed: int | None = ...,
        stop: str | Sequence[str] | None = ..., stream: Literal[True],
        timeout: Timeout | None = ...,
    ) -> AsyncStream[ChatCompletionChunk]: ...  # fmt: skip
    async def chat(
        self,
        messages: Sequence[MessageInput],
        *,
        model: str,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        stream: bool = False,
        timeout: Timeout | None = None,
    ) -> ChatCompletion | AsyncStream[ChatCompletionChunk]:
        """`Client.chat`, awaitable; with `stream=True` an `AsyncStream`."""
        body = _chat_body(
            messages, model=model, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
            seed=seed, stop=list(stop) if isinstance(stop, (list, tuple)) else stop,
            stream=stream,
        )  # fmt: skip
        path = "/v1/chat/completions"
        if stream:
            return AsyncStream(await self._open(body, path, timeout), ChatCompletionChunk)
        response = await self._request("POST", path, body=body, timeout=timeout)
        parsed: ChatCompletion = self._parse(response, ChatCompletion)
        return parsed

    async def _open(self, body: BaseModel, path: str, timeout: Timeout | None) -> httpx.Response:
        response: httpx.Response = await self._request(
            "POST", path, body=body, timeout=timeout, stream=True
        )
        return response
