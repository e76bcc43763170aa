"""The generator deployment: the whole backbone behind an engine (transformers on CPU, vLLM on
GPU; `generator.engine`), streaming each request's text.

The gateway resolves `model` to a registered prompt and checks the body; here the artifact is
read from the store (cached by content id), placed into the request's layout
(models/llm/generate/prompting.py), checked against the context, and run. Every refusal is
returned as the stream's first item, not raised, so the gateway can answer a 4xx/503 before
it starts a streamed 200 (and Serve logs no traceback for a client's mistake).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from promptserve.models.artifacts import PromptArtifact
from promptserve.models.bundle import Bundle
from promptserve.models.llm.bundle import llm_config
from promptserve.models.llm.generate.engine import EngineFull, GenerationEngine
from promptserve.models.llm.generate.params import EngineRequest, Sampling, Selection
from promptserve.models.llm.generate.prompting import Rendered, render
from promptserve.models.llm.generate.text import IncrementalText
from promptserve.serving.config import AppConfig, GeneratorConfig
from promptserve.serving.errors import InvalidInput, Overloaded, ServeError
from promptserve.serving.store import PromptRef, PromptStore

log = logging.getLogger("promptserve.generator")
_ARTIFACTS_KEPT = 256


@dataclass(frozen=True)
class GenerateCall:
    """One request as the gateway sends it: text or chat messages, the prompt to run with
    (None: the bare backbone) and the sampling fields, already range-checked."""

    prompt: str | None = None
    messages: tuple[dict[str, str], ...] | None = None
    ref: PromptRef | None = None
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    stream: bool = True  # False: one chunk with the whole answer (fewer hops back)
    request_id: str = ""


@dataclass
class GenChunk:
    """New text since the previous chunk; `finish` on the last. The first chunk carries the
    prompt's token count and, for a pool, the selection."""

    text: str
    tokens: int
    finish: str | None = None
    prompt_tokens: int = 0
    selection: Selection | None = None

    def extend(self, later: GenChunk) -> GenChunk:
        """This chunk followed by `later`, as one."""
        self.text += later.text
        self.tokens += later.tokens
        self.finish = later.finish
        return self


def build_engine(config: GeneratorConfig, bundle: Bundle) -> tuple[GenerationEngine, Any]:
    """(engine, transformers tokenizer) for the bundle's backbone, as `config.engine` says."""
    spec = llm_config(bundle).backbone_spec
    tokenizer = spec.load_tokenizer()
    if config.engine == "vllm":
        from promptserve.models.llm.generate.vllm_engine import VllmEngine, VllmOptions

        engine: GenerationEngine = VllmEngine(
            spec, VllmOptions.model_validate(config.vllm), max_waiting=config.max_waiting
        )
        return engine, tokenizer
    from promptserve.models.llm.generate.hf_engine import HfEngine

    engine = HfEngine(
        spec.load(),
        max_batch_rows=config.max_batch_rows,
        max_prefill_tokens=config.max_prefill_tokens,
        max_waiting=config.max_waiting,
    )
    return engine, tokenizer


class Generator:
    """Ray Serve deployment class (the LLM family's `generator` service)."""

    def __init__(self, config: AppConfig) -> None:
        assert config.generator is not None, "the generator runs only with a generator section"
        self.config = config
        self.settings = config.generator
        self.bundle = Bundle(config.bundle)
        self.store = PromptStore(config.prompts.store)
        self.engine, self.tokenizer = build_engine(self.settings, self.bundle)
        self.num_layers = self.engine.num_layers
        # the checkpoint's EOS ids and its tokenizer's
        eos = {*self.engine.eos_token_ids, self.tokenizer.eos_token_id} - {None}
        self.stop_token_ids = tuple(sorted(eos))
        self._artifacts: OrderedDict[str, PromptArtifact] = OrderedDict()

    async def check_health(self) -> None:
        """Serve's probe: a replica whose engine cannot serve is replaced."""
        await self.engine.check_health()

    async def _artifact(self, ref: PromptRef) -> PromptArtifact:
        hit = self._artifacts.get(ref.content_id)
        if hit is not None:
            self._artifacts.move_to_end(ref.content_id)
            return hit
        artifact, _ = await asyncio.to_thread(self.store.load, ref.prompt_id, ref.content_id)
        self._artifacts[ref.content_id] = artifact
        while len(self._artifacts) > _ARTIFACTS_KEPT:
            self._artifacts.popitem(last=False)
        return artifact

    async def _render(self, call: GenerateCall) -> Rendered:
        artifact = await self._artifact(call.ref) if call.ref is not None else None
        return await asyncio.to_thread(
            render,
            self.tokenizer,
            artifact,
            prompt=call.prompt,
            messages=call.messages,
            num_layers=self.num_layers,
        )

    def _budget(self, call: GenerateCall, rendered: Rendered) -> int:
        """max_tokens for the request, or an InvalidInput naming what does not fit."""
        context = self.engine.max_positions
        prompt = len(rendered.layout)
        selection = prompt + sum(len(p) for p in rendered.pool.prompts) if rendered.pool else 0
        if max(prompt, selection) >= context:
            what = "with every pool prompt (the selection pass) " if selection > prompt else ""
            raise InvalidInput(
                f"the prompt is {max(prompt, selection)} tokens {what}and the model's context is "
                f"{context}: shorten it (room is needed for at least one new token)",
                param="messages" if call.messages is not None else "prompt",
            )
        room = context - prompt
        if call.max_tokens is None:
            return min(self.settings.default_max_tokens, room)
        if call.max_tokens > room:
            raise InvalidInput(
                f"max_tokens={call.max_tokens} with a {prompt}-token prompt exceeds the model's "
                f"context of {context} tokens; ask for at most {room}",
                param="max_tokens",
            )
        return call.max_tokens

    async def generate(self, call: GenerateCall) -> AsyncIterator[GenChunk | ServeError]:
        """The request's chunks (a Serve streaming method); a refusal is the only item."""
        try:
            rendered = await self._render(call)
            max_tokens = self._budget(call, rendered)
        except ServeError as exc:
            yield exc
            return
        sampling = Sampling(
            max_tokens=max_tokens,
            temperature=call.temperature,
            top_p=call.top_p,
            seed=call.seed,
            stop_token_ids=() if call.ignore_eos else self.stop_token_ids,
        )
        request = EngineRequest(rendered.layout, sampling, rendered.pool, call.request_id)
        text = IncrementalText(self.tokenizer, call.stop)
        stream = self.engine.stream(request)
        whole: GenChunk | None = None
        try:
            async for out in stream:
                delta = text.add(out.token_ids, final=out.finish is not None)
                finish = "stop" if text.stopped else out.finish
                chunk = GenChunk(
                    delta, len(out.token_ids), finish, out.prompt_tokens, out.selection
                )
                if not call.stream:  # gathered here: one item crosses to the gateway
                    whole = chunk if whole is None else whole.extend(chunk)
                    if finish is None:
                        continue
                    chunk = whole
                yield chunk
                if finish is not None:
                    return
        except EngineFull as exc:
            retry = self.config.limits.retry_after_s
            yield Overloaded(f"{exc}; retry after {retry}s", retry_after_s=retry)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]  # frees the engine slot now

    def stats(self) -> dict[str, int]:
        """What the engine holds now (tests and /metrics: a dropped client frees its row)."""
        return {"running": self.engine.active}
