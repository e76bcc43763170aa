"""`POST /v1/completions` and `POST /v1/chat/completions`, OpenAI-compatible (as vLLM serves
them), where `model` names a registered generation prompt or the bare backbone; and the
generation models listed by `GET /v1/models`.

The gateway checks the body, resolves `model`, and relays the generator's chunks: as one JSON
answer, or as server-sent events (`data: {...}` per chunk, then `data: [DONE]`). It waits for
the first chunk before answering, so a refusal (prompt too long, generator full) is a plain
4xx/503, never a broken stream. A client that goes away cancels the generator's stream, which
frees its engine row at the next step.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from promptserve.models.llm.serve.base import GENERATION_METHODS, LlmGateway
from promptserve.models.llm.serve.generator import GenChunk, GenerateCall
from promptserve.serving.api import ERRORS, Route, json_body
from promptserve.serving.errors import InvalidInput, ModelNotFound, PromptNotFound, ServeError
from promptserve.serving.inputs import parse_json
from promptserve.serving.metrics import metrics
from promptserve.serving.store import PromptRef
from promptserve.types import ModelInfo
from promptserve.types.generation import (
    MAX_STOP,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    ChatResponseMessage,
    Completion,
    CompletionChoice,
    CompletionRequest,
    GenModel,
    PromptSelection,
    Usage,
)

MAX_STOP_CHARS = 256
MAX_MESSAGES = 512
# `stream: true` answers are server-sent events (the JSON schema describes each `data:` chunk)
STREAMED = {
    **ERRORS,
    200: {
        "content": {
            "text/event-stream": {
                "schema": {
                    "type": "object",
                    "description": "One server-sent event: `data` is a chunk's JSON (a "
                    "Completion or ChatCompletionChunk), and `[DONE]` last.",
                    "properties": {"data": {"type": "string"}},
                    "required": ["data"],
                }
            }
        }
    },
}


class GenerateRoutes(LlmGateway):
    ROUTES: ClassVar[tuple[Route, ...]] = (
        Route(
            "POST",
            "/v1/completions",
            "completions",
            {
                "response_model": Completion,
                "responses": STREAMED,
                "openapi_extra": json_body(CompletionRequest),
            },
        ),
        Route(
            "POST",
            "/v1/chat/completions",
            "chat_completions",
            {
                "response_model": ChatCompletion,
                "responses": STREAMED,
                "openapi_extra": json_body(ChatCompletionRequest),
            },
        ),
    )

    async def completions(self, request: Request) -> Any:
        return await self.observe("completions", lambda: self._generate(request, chat=False))

    async def chat_completions(self, request: Request) -> Any:
        return await self.observe("chat.completions", lambda: self._generate(request, chat=True))

    # -- the models `model` may name ---------------------------------------------------------
    async def served_models(self, info: ModelInfo) -> ModelInfo:
        if "generator" not in self.services:
            return info
        return info.model_copy(update={"object": "list", "data": await self.generation_models()})

    async def generation_models(self) -> list[GenModel]:
        """The bare backbone and every registered generation prompt (an app that generates)."""
        assert self.config.generator is not None
        base = self.config.generator.base_model
        models = [GenModel(id=base, created=int(time.time()), root=self.bundle.backbone_id)]
        for info in await asyncio.to_thread(self.store.list):
            if info.method in GENERATION_METHODS and info.backbone == self.bundle.backbone_id:
                stamp = int(info.registered_at.timestamp())
                models.append(
                    GenModel(
                        id=info.prompt_id, created=stamp, method=info.method, root=info.backbone
                    )
                )
        return models

    async def _model(self, name: str) -> tuple[str, PromptRef | None]:
        """(metric label, prompt) for `model`: the base backbone or a generation prompt; 404
        in OpenAI's terms (`model_not_found`) otherwise. The label is the id, capped as every
        prompt_id label is (`metrics.prompt_id_labels`)."""
        settings = self.config.generator
        assert settings is not None
        if name == settings.base_model:
            self._label(name)
            return self.metric_label(), None
        try:
            _, ref = await self.prompt(name, "generate")
        except (PromptNotFound, InvalidInput) as exc:
            if isinstance(exc, InvalidInput) and exc.param != "prompt_id":
                raise
            raise ModelNotFound(
                f"the model {name!r} does not exist: GET /v1/models lists the generation "
                f"prompts registered on this server, and {settings.base_model!r} runs the "
                "backbone with none",
                param="model",
            ) from None
        return self.metric_label(), ref

    # -- the request -------------------------------------------------------------------------
    def _check(self, req: CompletionRequest | ChatCompletionRequest) -> None:
        """The fields this server does not serve, refused by name rather than ignored."""
        settings = self.config.generator
        assert settings is not None
        if req.logprobs:
            raise InvalidInput("logprobs are not served", param="logprobs")
        if isinstance(req, CompletionRequest) and req.echo:
            raise InvalidInput("echo is not served", param="echo")
        for name in ("tools", "functions", "response_format", "logit_bias", "best_of"):
            if (req.model_extra or {}).get(name) not in (None, [], {}):
                raise InvalidInput(f"`{name}` is not served by this server", param=name)
        stops = req.stop_list()
        if len(stops) > MAX_STOP or any(len(s) > MAX_STOP_CHARS for s in stops):
            raise InvalidInput(
                f"at most {MAX_STOP} stop sequences of up to {MAX_STOP_CHARS} characters",
                param="stop",
            )
        limit = settings.max_tokens
        asked = _max_tokens(req)
        if asked is not None and asked > limit:
            raise InvalidInput(
                f"max_tokens={asked} is above this server's limit of {limit}", param="max_tokens"
            )
        chars = self.config.limits.max_document_chars
        texts = (
            [req.prompt] if isinstance(req, CompletionRequest) else [m.text() for m in req.messages]
        )
        if isinstance(req, ChatCompletionRequest) and len(req.messages) > MAX_MESSAGES:
            raise InvalidInput(f"at most {MAX_MESSAGES} messages", param="messages")
        if sum(len(t) for t in texts) > chars:
            raise InvalidInput(
                f"the prompt has {sum(len(t) for t in texts)} characters, above the limit of "
                f"{chars}",
                param="prompt" if isinstance(req, CompletionRequest) else "messages",
            )

    async def _generate(self, request: Request, *, chat: bool) -> Any:
        arrived = time.perf_counter()
        self.authorize(request)
        if "generator" not in self.services:
            raise ModelNotFound(
                "this server does not generate text: its app config has no `generator` section",
                param="model",
            )
        req: CompletionRequest | ChatCompletionRequest
        if chat:
            req = await parse_json(request, self.config.limits, ChatCompletionRequest)
        else:
            req = await parse_json(request, self.config.limits, CompletionRequest)
        self._check(req)
        label, ref = await self._model(req.model)
        call = GenerateCall(
            prompt=req.prompt if isinstance(req, CompletionRequest) else None,
            messages=tuple({"role": _role(m.role), "content": m.text()} for m in req.messages)
            if isinstance(req, ChatCompletionRequest)
            else None,
            ref=ref,
            max_tokens=_max_tokens(req),
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            seed=req.seed,
            stop=tuple(req.stop_list()),
            ignore_eos=req.ignore_eos,
            stream=req.stream,
        )
        stream = self.services["generator"].options(stream=True).generate.remote(call)
        try:
            first = await stream.__anext__()
        except StopAsyncIteration:
            raise ServeError("the generator ended without an answer") from None
        if isinstance(first, ServeError):
            raise first
        if req.stream:  # a whole answer arrives in one piece: its wait is not a first token's
            metrics().time_to_first_token.observe(time.perf_counter() - arrived)
        reply = _Reply(chat, label, req.model)
        if not req.stream:
            chunks = [first]
            async for chunk in stream:
                chunks.append(chunk)
            return JSONResponse(reply.whole(chunks, label).model_dump(mode="json"))
        usage = bool(req.stream_options and req.stream_options.include_usage)
        return StreamingResponse(
            self._events(stream, first, reply, label, usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _events(
        self, stream: Any, first: GenChunk, reply: _Reply, label: str, usage: bool
    ) -> AsyncIterator[str]:
        """SSE frames; a client that leaves cancels `stream` (the generator frees its row)."""
        m = metrics()
        last = time.perf_counter()
        done = False
        try:
            chunk: GenChunk | None = first
            while chunk is not None:
                reply.count(chunk)
                for frame in reply.frames(chunk):
                    yield f"data: {frame}\n\n"
                if chunk.finish is not None:
                    done = True
                    break
                chunk = await stream.__anext__()
                now = time.perf_counter()
                m.inter_token_latency.observe(now - last)
                last = now
            if usage:
                yield f"data: {reply.usage_frame()}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            if not done:
                stream.cancel()
            reply.record(label)


def _max_tokens(req: CompletionRequest | ChatCompletionRequest) -> int | None:
    if isinstance(req, ChatCompletionRequest) and req.max_completion_tokens is not None:
        return req.max_completion_tokens
    return req.max_tokens


def _role(role: str) -> str:
    return "system" if role == "developer" else role


class _Reply:
    """One response's ids, counts and OpenAI objects."""

    def __init__(self, chat: bool, label: str, model: str) -> None:
        self.chat = chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())
        self.model = model
        self.label = label
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.selection: PromptSelection | None = None
        self.sent_role = False

    def count(self, chunk: GenChunk) -> None:
        self.completion_tokens += chunk.tokens
        if chunk.prompt_tokens:
            self.prompt_tokens = chunk.prompt_tokens
        if chunk.selection is not None:
            s = chunk.selection
            self.selection = PromptSelection(index=s.index, score=s.score, scores=list(s.scores))

    def usage(self) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=self.prompt_tokens + self.completion_tokens,
        )

    def frames(self, chunk: GenChunk) -> list[str]:
        first = chunk.prompt_tokens > 0 or chunk.selection is not None
        selection = self.selection if first else None
        if not self.chat:
            body = Completion(
                id=self.id,
                created=self.created,
                model=self.model,
                choices=[CompletionChoice(text=chunk.text, finish_reason=chunk.finish)],
                selection=selection,
            )
            return [body.model_dump_json(exclude_none=True)]
        out = []
        if not self.sent_role:
            self.sent_role = True
            role = ChatCompletionChunk(
                id=self.id,
                created=self.created,
                model=self.model,
                choices=[ChatChunkChoice(delta=ChatDelta(role="assistant", content=""))],
                selection=selection,
            )
            out.append(role.model_dump_json(exclude_none=True))
        if chunk.text or chunk.finish is not None:
            step = ChatCompletionChunk(
                id=self.id,
                created=self.created,
                model=self.model,
                choices=[
                    ChatChunkChoice(
                        delta=ChatDelta(content=chunk.text or None),
                        finish_reason=chunk.finish,
                    )
                ],
            )
            out.append(step.model_dump_json(exclude_none=True))
        return out

    def usage_frame(self) -> str:
        cls = ChatCompletionChunk if self.chat else Completion
        body = cls(
            id=self.id, created=self.created, model=self.model, choices=[], usage=self.usage()
        )
        return body.model_dump_json(exclude_none=True)

    def whole(self, chunks: list[GenChunk], label: str) -> Completion | ChatCompletion:
        for chunk in chunks:
            self.count(chunk)
        self.record(label)
        text = "".join(c.text for c in chunks)
        finish = chunks[-1].finish
        if self.chat:
            return ChatCompletion(
                id=self.id,
                created=self.created,
                model=self.model,
                choices=[
                    ChatChoice(message=ChatResponseMessage(content=text), finish_reason=finish)
                ],
                usage=self.usage(),
                selection=self.selection,
            )
        return Completion(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[CompletionChoice(text=text, finish_reason=finish)],
            usage=self.usage(),
            selection=self.selection,
        )

    def record(self, label: str) -> None:
        m = metrics()
        m.generated_tokens.inc(self.completion_tokens, tags={"prompt_id": label})
        m.prompt_tokens.inc(self.prompt_tokens)
        if self.selection is not None:
            m.pool_selections.inc(tags={"prompt_id": label, "choice": str(self.selection.index)})
