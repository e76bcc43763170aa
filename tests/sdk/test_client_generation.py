"""`Client.generate` / `chat` / `models` and their async twins, against httpx.MockTransport.

The server's side is written here by hand, byte for byte, in OpenAI's / vLLM's SSE framing
(`data: <chunk JSON>` events, `: ping` comments, multi-line `data:`, CRLF line ends, `[DONE]`),
and the expected chunks are spelled out from those bytes, not taken from the SDK. Streams
are checked to be read incrementally (a chunk arrives before the server has sent the rest),
to close the response when the caller stops early, to retry a 503 only before the stream
starts, and never to resend once it has started. The e2e tests (tests/e2e) run the same calls
against the real server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from local_server import running_server

import promptserve
from promptserve import cli
from promptserve._generation import _SSEDecoder

URL = "http://promptserve.test"


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _completion_chunk(text: str, finish: str | None = None, **more: Any) -> dict[str, Any]:
    choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
    return {
        "id": "cmpl-1", "object": "text_completion", "created": 1700000000, "model": "pool",
        "choices": [choice], **more,
    }  # fmt: skip


SELECTION = {"index": 2, "score": 0.5, "scores": [0.1, 0.4, 0.5]}
USAGE = {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
# One completion stream as a server sends it: a first chunk with the IDP selection, a keep-alive
# comment, a chunk whose JSON spans two `data:` lines, one framed with CRLF, the usage chunk
# (no choices), then [DONE].
COMPLETION_SSE = [
    _event(_completion_chunk("Hello", selection=SELECTION)),
    b": ping\n\n",
    b'data: {"id": "cmpl-1", "object": "text_completion", "created": 1700000000,\n'
    b'data:  "model": "pool", "choices": [{"index": 0, "text": " world"}]}\n\n',
    b"data: " + json.dumps(_completion_chunk("!", "length")).encode() + b"\r\n\r\n",
    b'data: {"id": "cmpl-1", "created": 1700000000, "model": "pool", "choices": [], '
    b'"usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}}\n\n',
    b"data: [DONE]\n\n",
]
# (text of choice 0 or None, finish_reason, selection, usage) per chunk, read off the bytes above
COMPLETION_EXPECTED = [
    ("Hello", None, SELECTION, None),
    (" world", None, None, None),
    ("!", "length", None, None),
    (None, None, None, USAGE),
]


def _chat_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000,
        "model": "peft-demo", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }  # fmt: skip


CHAT_SSE = [
    _event(_chat_chunk({"role": "assistant", "content": ""})),
    _event(_chat_chunk({"content": "Hi"})),
    b": ping\n\n",
    _event(_chat_chunk({"content": " there"}, "stop")),
    b"data: [DONE]\n\n",
]
CHAT_EXPECTED = [("assistant", ""), (None, "Hi"), (None, " there")]


def _sent(body: dict[str, Any]) -> dict[str, Any]:
    """The fields a request set: the SDK sends the whole request model, with the options the
    call left out as null (or the model's default), which the server reads as its defaults."""
    defaults = {"echo": False, "ignore_eos": False}
    return {k: v for k, v in body.items() if v is not None and defaults.get(k) != v}


def _summary(chunk: promptserve.Completion) -> tuple[Any, ...]:
    choice = chunk.choices[0] if chunk.choices else None
    return (
        choice.text if choice else None,
        choice.finish_reason if choice else None,
        chunk.selection.model_dump() if chunk.selection else None,
        chunk.usage.model_dump() if chunk.usage else None,
    )


def _pieces(frames: list[bytes], size: int) -> list[bytes]:
    """The frames' bytes cut every `size` bytes, across line and event boundaries."""
    data = b"".join(frames)
    return [data[i : i + size] for i in range(0, len(data), size)]


class _Body(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body sent part by part, recording how many parts went out and whether the
    client closed it (what the server sees as a disconnect)."""

    def __init__(self, parts: list[bytes], fail_after: int | None = None):
        self.parts = parts
        self.fail_after = fail_after  # raise a broken connection after this many parts
        self.sent = 0
        self.closed = False

    def _next_parts(self) -> Iterator[bytes]:
        for part in self.parts:
            if self.fail_after is not None and self.sent >= self.fail_after:
                raise httpx.ReadError("connection reset by peer")
            self.sent += 1
            yield part

    def __iter__(self) -> Iterator[bytes]:
        yield from self._next_parts()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self._next_parts():
            yield part

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def _sse(body: _Body) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=body)


def _answers(*responses: httpx.Response) -> tuple[Callable[..., httpx.Response], list[Any]]:
    """A handler answering `responses` in turn, recording each request's JSON body."""
    seen: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, json.loads(request.content) if request.content else None))
        return responses[min(len(seen), len(responses)) - 1]

    return handler, seen


def _run(kind: str, handler: Callable[..., httpx.Response], call: Callable[..., Any], **kw: Any):
    """`call(client)` on a sync client, or awaited on an async one; a stream is read whole."""
    if kind == "sync":
        http = httpx.Client(transport=httpx.MockTransport(handler))
        with promptserve.Client(URL, http_client=http, **kw) as client:
            out = call(client)
            return list(out) if isinstance(out, promptserve.Stream) else out

    async def main() -> Any:
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with promptserve.AsyncClient(URL, http_client=http, **kw) as client:
            out = await call(client)
            if isinstance(out, promptserve.AsyncStream):
                return [chunk async for chunk in out]
            return out

    return asyncio.run(main())


# -- the SSE decoder -----------------------------------------------------------------------------


def test_sse_decoder_follows_the_event_stream_rules():
    decoder = _SSEDecoder()
    lines = [
        ": ping", "",  # a comment alone dispatches nothing
        "data: {\"a\":", "data:1}", "",  # two data lines, joined by a newline; no space is fine
        "event: error", "id: 7", "retry: 100", "data:  two spaces", "",
        "", "",  # blank lines without data dispatch nothing
        "data", "",  # a field without a colon: empty data
    ]  # fmt: skip
    events = [e for e in map(decoder.feed, lines) if e is not None]
    assert events == [(None, '{"a":\n1}'), ("error", " two spaces"), (None, "")]


# -- streams -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("size", [7, 64, 10_000])
def test_generate_stream_parses_frames_cut_anywhere(kind, size):
    handler, seen = _answers(_sse(_Body(_pieces(COMPLETION_SSE, size))))
    chunks = _run(
        kind, handler,
        lambda c: c.generate("Once", model="pool", max_tokens=3, stop=["\n"], stream=True),
    )  # fmt: skip
    assert [_summary(c) for c in chunks] == COMPLETION_EXPECTED
    assert all(isinstance(c, promptserve.Completion) for c in chunks)
    path, body = seen[0]
    assert len(seen) == 1 and path == "/v1/completions"
    assert _sent(body) == {
        "model": "pool",
        "prompt": "Once",
        "max_tokens": 3,
        "stop": ["\n"],
        "stream": True,
    }
    assert body["temperature"] is None and body["top_p"] is None  # the server's defaults


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_chat_stream_takes_dicts_and_messages(kind):
    handler, seen = _answers(_sse(_Body(_pieces(CHAT_SSE, 5))))
    messages = [
        {"role": "system", "content": "Be brief."},
        promptserve.ChatMessage(role="user", content="Hello"),
    ]
    chunks = _run(
        kind, handler,
        lambda c: c.chat(messages, model="peft-demo", temperature=0, seed=1, stream=True),
    )  # fmt: skip
    assert [(c.choices[0].delta.role, c.choices[0].delta.content) for c in chunks] == CHAT_EXPECTED
    assert [c.choices[0].finish_reason for c in chunks] == [None, None, "stop"]
    assert all(isinstance(c, promptserve.ChatCompletionChunk) for c in chunks)
    path, body = seen[0]
    assert path == "/v1/chat/completions"
    assert _sent(body) == {
        "model": "peft-demo",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
        ],
        "temperature": 0,
        "seed": 1,
        "stream": True,
    }


def test_sync_and_async_streams_are_equal():
    def both(frames: list[bytes], call: Callable[..., Any]) -> list[list[dict[str, Any]]]:
        out = []
        for kind in ("sync", "async"):
            handler, _ = _answers(_sse(_Body(_pieces(frames, 11))))
            out.append([c.model_dump() for c in _run(kind, handler, call)])
        return out

    sync, async_ = both(COMPLETION_SSE, lambda c: c.generate("x", model="pool", stream=True))
    assert sync == async_ and len(sync) == 4
    chat = [{"role": "user", "content": "x"}]
    sync, async_ = both(CHAT_SSE, lambda c: c.chat(chat, model="peft-demo", stream=True))
    assert sync == async_ and len(sync) == 3


def test_stream_is_read_incrementally_and_closed_at_the_end():
    body = _Body(COMPLETION_SSE)
    handler, _ = _answers(_sse(body))
    http = httpx.Client(transport=httpx.MockTransport(handler))
    with promptserve.Client(URL, http_client=http) as client:
        stream = client.generate("x", model="pool", stream=True)
        assert body.sent == 0  # headers only: the body is not read before iterating
        first = next(stream)
        assert first.choices[0].text == "Hello"
        assert body.sent == 1 and not body.closed  # one event out of six, as it came
        rest = list(stream)
    assert len(rest) == 3 and body.sent == len(COMPLETION_SSE) and body.closed


def test_leaving_a_stream_early_closes_the_response():
    bodies = [_Body(COMPLETION_SSE), _Body(COMPLETION_SSE), _Body(COMPLETION_SSE)]
    handler, seen = _answers(*map(_sse, bodies))
    http = httpx.Client(transport=httpx.MockTransport(handler))
    with promptserve.Client(URL, http_client=http) as client:
        with client.generate("x", model="pool", stream=True) as stream:
            for _chunk in stream:
                break  # the caller stops after the first chunk
        stream = client.generate("x", model="pool", stream=True)
        next(stream)
        stream.close()
        client.generate("x", model="pool", stream=True).close()  # never iterated
    assert [b.closed for b in bodies] == [True, True, True]
    assert [b.sent for b in bodies] == [1, 1, 0]  # nothing more was read after leaving
    assert len(seen) == 3


def test_async_stream_left_early_closes_the_response():
    bodies = [_Body(CHAT_SSE), _Body(CHAT_SSE)]
    handler, _ = _answers(*map(_sse, bodies))

    async def main() -> list[str | None]:
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with promptserve.AsyncClient(URL, http_client=http) as client:
            msgs = [{"role": "user", "content": "x"}]
            async with await client.chat(msgs, model="peft-demo", stream=True) as stream:
                roles = [(await stream.__anext__()).choices[0].delta.role]
            stream = await client.chat(msgs, model="peft-demo", stream=True)
            async for chunk in stream:
                roles.append(chunk.choices[0].delta.role)
                break
            await stream.close()
            return roles

    assert asyncio.run(main()) == ["assistant", "assistant"]
    assert [b.closed for b in bodies] == [True, True]
    assert [b.sent for b in bodies] == [1, 1]


# -- errors and retries ----------------------------------------------------------------------


def _error(status: int, error_type: str, message: str, **headers: str) -> httpx.Response:
    body = {"error": {"type": error_type, "message": message, "param": "model", "code": None}}
    return httpx.Response(status, json=body, headers=headers)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_error_status_before_the_stream_raises_the_mapped_error(kind):
    handler, seen = _answers(_error(404, "model_not_found", "no model 'nope'"))
    with pytest.raises(promptserve.NotFoundError) as info:
        _run(kind, handler, lambda c: c.generate("x", model="nope", stream=True))
    assert info.value.status_code == 404 and info.value.error_type == "model_not_found"
    assert info.value.message == "no model 'nope'" and info.value.param == "model"
    assert len(seen) == 1  # a 404 is not retried


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_503_is_retried_before_the_stream_starts(kind):
    body = _Body(_pieces(CHAT_SSE, 9))
    busy = _error(503, "overloaded", "generator full", **{"Retry-After": "0"})
    handler, seen = _answers(busy, busy, _sse(body))
    msgs = [{"role": "user", "content": "x"}]
    chunks = _run(
        kind, handler, lambda c: c.chat(msgs, model="peft-demo", stream=True), max_retries=2
    )
    assert [(c.choices[0].delta.role, c.choices[0].delta.content) for c in chunks] == CHAT_EXPECTED
    assert len(seen) == 3 and seen[0] == seen[2]  # the same request, resent before any byte
    assert body.closed


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_503_after_the_retries_raises_server_overloaded(kind):
    busy = _error(503, "overloaded", "generator full", **{"Retry-After": "0"})
    handler, seen = _answers(busy)
    with pytest.raises(promptserve.ServerOverloaded) as info:
        _run(kind, handler, lambda c: c.generate("x", model="pool", stream=True), max_retries=1)
    assert len(seen) == 2 and info.value.retry_after == 0.0


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_stream_broken_midway_is_not_resent(kind):
    body = _Body(COMPLETION_SSE, fail_after=2)
    handler, seen = _answers(_sse(body), _sse(_Body(COMPLETION_SSE)))
    got: list[str] = []

    def call(client: Any) -> Any:
        if kind == "sync":
            for chunk in client.generate("x", model="pool", stream=True):
                got.append(chunk.choices[0].text)
            return None

        async def read() -> None:
            async for chunk in await client.generate("x", model="pool", stream=True):
                got.append(chunk.choices[0].text)

        return read()

    with pytest.raises(promptserve.APIConnectionError, match="stream broke"):
        _run(kind, handler, call, max_retries=2)
    assert got == ["Hello"]  # what came before the break was delivered
    assert len(seen) == 1 and body.closed


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_stream_cut_before_done_raises(kind):
    body = _Body(COMPLETION_SSE[:3])
    handler, _ = _answers(_sse(body))
    with pytest.raises(promptserve.APIConnectionError, match=r"ended before \[DONE\]"):
        _run(kind, handler, lambda c: c.generate("x", model="pool", stream=True))
    assert body.closed


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_error_event_in_the_stream_raises_its_message(kind):
    failure = {"error": {"type": "internal_error", "message": "engine died", "code": 500}}
    body = _Body([COMPLETION_SSE[0], _event(failure), b"data: [DONE]\n\n"])
    handler, _ = _answers(_sse(body))
    with pytest.raises(promptserve.APIError, match="engine died") as info:
        _run(kind, handler, lambda c: c.generate("x", model="pool", stream=True))
    assert info.value.body == failure and body.closed


def test_bad_arguments_fail_before_sending():
    handler, seen = _answers(httpx.Response(500))
    http = httpx.Client(transport=httpx.MockTransport(handler))
    with promptserve.Client(URL, http_client=http) as client:
        with pytest.raises(promptserve.InvalidInput) as info:
            client.generate("x", model="pool", temperature=3.0)
        assert info.value.param == "temperature"
        with pytest.raises(promptserve.InvalidInput) as info:
            client.chat([{"role": "robot", "content": "x"}], model="pool")
        assert info.value.param == "messages[0]"
        with pytest.raises(promptserve.InvalidInput):
            client.chat({"role": "user", "content": "x"}, model="pool")  # type: ignore[arg-type]
    assert seen == []


# -- whole answers and the model list ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_generate_and_chat_without_stream(kind):
    completion = _completion_chunk(" upon a time", "stop", usage=USAGE, selection=SELECTION)
    chat = {
        "id": "chatcmpl-2", "object": "chat.completion", "created": 1700000000,
        "model": "peft-demo", "usage": USAGE,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"},
                     "finish_reason": "stop"}],
    }  # fmt: skip
    handler, seen = _answers(httpx.Response(200, json=completion))
    out = _run(kind, handler, lambda c: c.generate("Once", model="pool", top_p=0.9))
    assert isinstance(out, promptserve.Completion)
    assert (out.choices[0].text, out.choices[0].finish_reason) == (" upon a time", "stop")
    assert out.selection is not None and out.selection.index == 2
    assert out.usage is not None and out.usage.total_tokens == 6
    assert _sent(seen[0][1]) == {"model": "pool", "prompt": "Once", "top_p": 0.9, "stream": False}

    handler, seen = _answers(httpx.Response(200, json=chat))
    out = _run(kind, handler, lambda c: c.chat([{"role": "user", "content": "Hey"}], model="p"))
    assert isinstance(out, promptserve.ChatCompletion)
    assert out.choices[0].message.content == "Hi!" and out.selection is None


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_models_lists_the_generation_ids(kind):
    info = {
        "backbone": "tiny-llm", "family": "llm", "embed_dim": 64, "engine": "onnxruntime",
        "max_body_bytes": 1 << 20, "tasks": ["embed", "generate"], "object": "list",
        "data": [
            {"id": "tiny-llm", "created": 1, "root": "tiny-llm"},
            {"id": "pool", "created": 2, "method": "idp", "root": "tiny-llm"},
        ],
    }  # fmt: skip
    handler, seen = _answers(httpx.Response(200, json=info))
    out = _run(kind, handler, lambda c: c.models())
    assert isinstance(out, promptserve.GenModelList)
    assert [(m.id, m.method) for m in out.data] == [("tiny-llm", None), ("pool", "idp")]
    assert seen == [("/v1/models", None)]


# -- the CLI, over real HTTP ---------------------------------------------------------------------


def test_cli_generate_streams_text_and_reports_the_pool_choice(capsys):
    with running_server() as server:
        server.routes[("POST", "/v1/completions")] = lambda body: (200, b"".join(COMPLETION_SSE))
        code = cli.main(
            ["generate", "--model", "pool", "--max-tokens", "3", "--url", server.url, "Once"]
        )
        sent = server.requests[0][2]
    out = capsys.readouterr()
    assert code == 0
    assert out.out == "Hello world!\n"
    assert out.err == "pool: pool prompt #2 chosen (score 0.5000)\n"
    assert _sent(sent) == {"model": "pool", "prompt": "Once", "max_tokens": 3, "stream": True}


def test_cli_generate_chat_without_stream(capsys):
    answer = {
        "id": "c", "object": "chat.completion", "created": 1, "model": "peft-demo",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}}],
    }  # fmt: skip
    with running_server() as server:
        server.routes[("POST", "/v1/chat/completions")] = lambda body: (200, answer)
        code = cli.main(
            ["generate", "--chat", "--no-stream", "--model", "peft-demo", "--temperature", "0",
             "--url", server.url, "Hello"]
        )  # fmt: skip
        sent = server.requests[0][2]
    out = capsys.readouterr()
    assert (code, out.out, out.err) == (0, "Hi!\n", "")
    assert _sent(sent) == {
        "model": "peft-demo", "messages": [{"role": "user", "content": "Hello"}],
        "temperature": 0.0, "stream": False,
    }  # fmt: skip


def test_cli_generate_unknown_model_is_one_line(capsys):
    error = {"error": {"type": "model_not_found", "message": "no model 'nope'", "param": "model"}}
    with running_server() as server:
        server.routes[("POST", "/v1/completions")] = lambda body: (404, error)
        code = cli.main(["generate", "--model", "nope", "--url", server.url, "x"])
    err = capsys.readouterr().err
    assert code == 1
    assert err == "promptserve generate: error: 404 model_not_found: no model 'nope'\n"
