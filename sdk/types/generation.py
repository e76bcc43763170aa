"""Generation wire schemas: OpenAI's completions and chat completions, as vLLM serves them.

`model` names a registered generation prompt (a soft prompt, an IDP pool or a hard prompt) or
the bundle's bare backbone (`GET /v1/models` lists them), so the `openai` client works
unchanged, as vLLM and LoRAX select adapters by `model`. Fields we do not serve (n > 1,
logprobs, tools, ...) are refused with a 400 naming them rather than ignored.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_STOP = 4  # OpenAI's limit on `stop` sequences


class _Request(BaseModel):
    # OpenAI clients send fields we do not know (`user`, `metadata`, ...): accepted and
    # ignored where harmless; the ones that would change the answer are checked explicitly.
    model_config = ConfigDict(extra="allow")

    model: str = Field(description="A prompt id from GET /v1/models.")
    max_tokens: int | None = Field(None, ge=1, description="New tokens at most.")
    temperature: float | None = Field(None, ge=0, le=2, description="0 = greedy. Default 1.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling. Default 1.")
    seed: int | None = Field(None, description="Repeatable sampling for this request.")
    stop: str | list[str] | None = Field(None, description="Up to 4 stop sequences.")
    stream: bool = Field(False, description="Server-sent events, one chunk per step.")
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, ge=1, le=1, description="Only 1 is served.")
    ignore_eos: bool = Field(
        False, description="vLLM's extension: go on past EOS until max_tokens (benchmarks)."
    )

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class StreamOptions(BaseModel):
    include_usage: bool = False


class CompletionRequest(_Request):
    """Body of `POST /v1/completions`."""

    prompt: str = Field(description="The text to continue.")
    echo: bool = Field(False, description="Not served: must be false.")
    logprobs: int | None = Field(None, description="Not served: must be null.")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] = Field(description="Text, or text parts.")

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ContentPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatCompletionRequest(_Request):
    """Body of `POST /v1/chat/completions`."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="Alias of max_tokens.")
    logprobs: bool | None = Field(None, description="Not served: must be false or null.")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class PromptSelection(BaseModel):
    """Which prompt of an IDP pool the request ran with (promptserve's field; OpenAI clients
    keep unknown fields, e.g. `completion.selection` or `model_extra`)."""

    index: int = Field(description="The chosen prompt's position in the pool.")
    score: float = Field(description="Its mean attention from the input.")
    scores: list[float] = Field(description="Every prompt's score, in pool order.")


FinishReason = Literal["stop", "length"]


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: FinishReason | None = None
    logprobs: None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    selection: PromptSelection | None = None


class ChatResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatResponseMessage
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None
    selection: PromptSelection | None = None


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: ChatDelta
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None
    selection: PromptSelection | None = None


class GenModel(BaseModel):
    """One entry of `GET /v1/models` (OpenAI's Model, plus what promptserve knows of it)."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "promptserve"
    method: str | None = Field(None, description="soft-prompt, idp, hard-prompt; null: the base.")
    root: str | None = Field(None, description="The backbone the prompt adapts.")


class GenModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[GenModel]


CompletionRequest.model_rebuild()
ChatCompletionRequest.model_rebuild()
ChatMessage.model_rebuild()
