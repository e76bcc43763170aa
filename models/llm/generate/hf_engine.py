"""The CPU generation engine: a transformers causal LM run step by step, many requests per step.

Why not `model.generate`: it takes one fixed batch and cannot admit a request that arrives
while it runs; transformers' continuous-batching manager (`init_continuous_batching`) admits
new requests but takes token ids only, not the input embeddings every soft prompt needs. So
this engine drives the model's own forward, KV cache (`DynamicCache`) and sampling warpers
(`TemperatureLogitsWarper`, `TopPLogitsWarper`) with a step-level scheduler:

- every step decodes one token for each running request, in one forward over a left-padded
  batch (each row's own positions; the 2D mask hides its padding);
- requests that arrived since the previous step are prefilled together from input embeddings
  (`layout.embed`: token rows plus each request's soft spans written into its own positions),
  and their cache rows join the running batch, left-padded to its length;
- a request whose client went away is dropped from the batch and its cache rows at the next
  step;
- an IDP pool request first runs the selection pass (`select_pool`) with all its prompts
  before the input, then prefills with the chosen prompt alone.

Forward passes run in a worker thread, so the event loop keeps taking requests and
cancellations while the model computes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from promptserve.models.llm.generate.engine import EngineFull, GenerationEngine, eos_ids
from promptserve.models.llm.generate.layout import PromptLayout, SoftSpan, embed
from promptserve.models.llm.generate.params import (
    EngineRequest,
    PoolChoice,
    Selection,
    StepOutput,
)
from promptserve.models.llm.generate.selection import pool_scores

__all__ = ["HfEngine", "pool_layout", "select_pool"]

log = logging.getLogger("promptserve.generate")


def pool_layout(
    layout: PromptLayout, pool: PoolChoice
) -> tuple[PromptLayout, list[tuple[int, int]]]:
    """The selection pass's layout: every pool prompt, in order, at `pool.position`; and each
    prompt's [start, stop) in the flat sequence."""
    spans = [SoftSpan(pool.position, prompt) for prompt in pool.prompts]
    merged = sorted([*layout.spans, *spans], key=lambda s: s.position)
    full = PromptLayout(layout.ids, tuple(merged))
    first = next(i for i, s in enumerate(full.spans) if s.embeddings is pool.prompts[0])
    ranges = [
        (full.starts[first + k], full.starts[first + k] + len(p))
        for k, p in enumerate(pool.prompts)
    ]
    return full, ranges


def chosen_layout(layout: PromptLayout, pool: PoolChoice, index: int) -> PromptLayout:
    """The request's layout with the chosen prompt alone at the pool's position."""
    spans = sorted(
        [*layout.spans, SoftSpan(pool.position, pool.prompts[index])], key=lambda s: s.position
    )
    return PromptLayout(layout.ids, tuple(spans))


def cache_keyword(model: Any) -> str:
    """The forward's name for the KV cache: `cache` from transformers 5.25 (where
    `past_key_values` is a deprecated alias), `past_key_values` before; passing the wrong one
    would silently run without the cache."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _left_padded(layouts: Sequence[PromptLayout], device: Any = None) -> tuple[Any, Any]:
    """[B, T] attention mask (1 = a real position) and position ids of left-padded
    `layouts`: each row counts its own positions from 0 (padding gets 0, masked)."""
    import torch

    width = max(len(x) for x in layouts)
    mask = torch.zeros((len(layouts), width), dtype=torch.long, device=device)
    for row, layout in enumerate(layouts):
        mask[row, width - len(layout) :] = 1
    return mask, (mask.cumsum(-1) - 1).clamp(min=0)


STEPS_PER_HOP = 16


def _deliver(outbox: list[tuple[_Slot, StepOutput]]) -> None:
    """On the event loop: one step's outputs into their streams' queues."""
    for slot, out in outbox:
        slot.queue.put_nowait(out)


class _Stop(Exception):
    """Raised by the selection hook once the selection layer's attention is read: the layers
    after it are not needed."""


def select_pool(model: Any, requests: Sequence[tuple[PromptLayout, PoolChoice]]) -> list[Selection]:
    """IDP selection for a batch of requests (models/llm/generate/selection.py): one prefill of
    each request's pool layout, left-padded together, stopped at the deepest selection layer.

    The attention probabilities are recomputed at each selection layer from that layer's own
    query and key projections and rotary embeddings, under the causal and padding mask, so the
    pass can run with any attention kernel (sdpa included) and never keeps more than one
    layer's [heads, T, T] per row.
    """
    import torch
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

    layouts, ranges = zip(*(pool_layout(layout, pool) for layout, pool in requests), strict=True)
    layers = model.model.layers
    depth = [len(layers) - 1 if pool.layer is None else pool.layer for _, pool in requests]
    device = model.get_input_embeddings().weight.device
    mask, positions = _left_padded(layouts, device)
    captured: dict[int, Any] = {}

    def hook(layer_index: int) -> Any:
        def read(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            hidden: Any = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            cos, sin = kwargs["position_embeddings"]
            batch, length, _ = hidden.shape
            shape = (batch, length, -1, module.head_dim)
            q = module.q_proj(hidden).view(shape).transpose(1, 2)
            k = module.k_proj(hidden).view(shape).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            k = repeat_kv(k, module.num_key_value_groups)
            scores = (q @ k.transpose(-1, -2)) * module.scaling
            causal = torch.ones((length, length), dtype=torch.bool, device=device).tril()
            allowed = causal[None, None] & mask[:, None, None, :].bool()
            scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
            captured[layer_index] = torch.softmax(scores.float(), dim=-1)
            if layer_index == max(depth):
                raise _Stop

        return read

    handles = [
        layers[i].self_attn.register_forward_pre_hook(hook(i), with_kwargs=True) for i in set(depth)
    ]
    try:
        with torch.inference_mode():
            from transformers import DynamicCache

            inputs = embed(layouts, model.get_input_embeddings())
            with contextlib.suppress(_Stop):
                model.model(
                    inputs_embeds=inputs,
                    attention_mask=mask,
                    position_ids=positions,
                    use_cache=True,
                    **{cache_keyword(model.model): DynamicCache(config=model.config)},
                )
    finally:
        for h in handles:
            h.remove()
    out = []
    width = mask.shape[1]
    for row, ((_, pool), spans, layout) in enumerate(zip(requests, ranges, layouts, strict=True)):
        pad = width - len(layout)
        probs = captured[depth[row]][row, :, pad:, pad:].float().cpu().numpy()
        stop = spans[-1][1]
        scores = pool_scores(probs, spans, (stop, len(layout)), pool.heads)
        best = int(np.argmax(scores))
        out.append(Selection(best, float(scores[best]), tuple(float(s) for s in scores)))
    return out


@dataclass(eq=False)
class _Slot:
    """One request in the engine: its queue of outputs and its decoding state."""

    request: EngineRequest
    queue: asyncio.Queue[StepOutput | BaseException]
    loop: asyncio.AbstractEventLoop
    cancelled: bool = False
    generated: int = 0
    length: int = 0  # real positions so far (prompt + generated)
    last: int = 0  # the token the next decode step feeds
    generator: Any = None
    selection: Selection | None = None
    layout: PromptLayout | None = None
    pending: list[int] = field(default_factory=list)

    def put(self, item: StepOutput | BaseException) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


class HfEngine(GenerationEngine):
    """Step-level batched generation on a transformers causal LM (see the module docstring).

    `max_batch_rows` bounds the requests decoded together, `max_prefill_tokens` the prompt
    tokens prefilled in one step (a long prompt still goes, alone), `max_waiting` the queue;
    beyond it `stream` raises EngineFull.
    """

    def __init__(
        self,
        model: Any,
        *,
        max_batch_rows: int = 16,
        max_prefill_tokens: int = 4096,
        max_waiting: int = 256,
    ) -> None:
        import torch

        self.model = model.eval()
        self.table = model.get_input_embeddings()
        self._cache_kw = cache_keyword(model)
        config = model.config
        self.max_positions = int(config.max_position_embeddings)
        self.hidden_size = int(config.hidden_size)
        self.num_layers = int(config.num_hidden_layers)
        self.eos_token_ids = eos_ids(getattr(model.generation_config, "eos_token_id", None))
        self.num_heads = int(config.num_attention_heads)
        self.max_batch_rows = max_batch_rows
        self.max_prefill_tokens = max_prefill_tokens
        self.max_waiting = max_waiting
        self._waiting: collections.deque[_Slot] = collections.deque()
        self._running: list[_Slot] = []
        self._cache: Any = None
        self._mask: torch.Tensor | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = threading.Lock()  # one step at a time, whoever drives it
        self._outbox: list[tuple[_Slot, StepOutput]] = []  # this step's outputs
        self.steps = 0

    # -- the public face ---------------------------------------------------------------------
    async def stream(self, request: EngineRequest) -> AsyncIterator[StepOutput]:
        if len(self._waiting) >= self.max_waiting:
            raise EngineFull(f"{len(self._waiting)} requests are waiting for the generator")
        loop = asyncio.get_running_loop()
        slot = _Slot(request, asyncio.Queue(), loop)
        self._waiting.append(slot)
        self._ensure_loop(loop)
        try:
            while True:
                item = await slot.queue.get()
                if isinstance(item, BaseException):
                    raise item
                # a reader slower than the engine gets every token made meanwhile at once
                while item.finish is None and not slot.queue.empty():
                    more = slot.queue.get_nowait()
                    if isinstance(more, BaseException):
                        raise more
                    item.token_ids += more.token_ids
                    item.finish = more.finish
                yield item
                if item.finish is not None:
                    return
        finally:
            slot.cancelled = True  # dropped, with its cache rows, at the next step

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._running, self._cache, self._mask = [], None, None

    @property
    def active(self) -> int:
        return len(self._running)

    async def check_health(self) -> None:
        """The scheduler survives a failed step (its requests fail); if its task itself died,
        nothing would run again."""
        task = self._task
        if task is not None and task.done() and not task.cancelled() and task.exception():
            raise RuntimeError(f"the generation loop stopped: {task.exception()}")

    # -- the scheduler -----------------------------------------------------------------------
    def _ensure_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the scheduler on this event loop (again, if an earlier loop was closed)."""
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._loop())
        assert self._wake is not None
        self._wake.set()

    async def _loop(self) -> None:
        assert self._wake is not None
        while True:
            if not self._running and not self._waiting:
                self._wake.clear()
                await self._wake.wait()
                continue
            admitted = self._admit()
            try:
                await asyncio.to_thread(self._steps, admitted)
            except Exception as exc:  # a failed forward fails its requests, not the engine
                log.exception("generation step failed")
                for slot in [*self._running, *admitted]:
                    slot.put(RuntimeError(f"generation failed: {exc}"))
                self._running, self._cache, self._mask = [], None, None

    def _admit(self) -> list[_Slot]:
        """Waiting requests that fit this step: rows left in the batch, prefill tokens."""
        admitted: list[_Slot] = []
        tokens = 0
        while self._waiting and len(self._running) + len(admitted) < self.max_batch_rows:
            slot = self._waiting[0]
            if slot.cancelled:
                self._waiting.popleft()
                continue
            size = len(slot.request.layout)
            if admitted and tokens + size > self.max_prefill_tokens:
                break
            admitted.append(self._waiting.popleft())
            tokens += size
        return admitted

    def _steps(self, admitted: Sequence[_Slot]) -> None:
        """Steps in the worker thread until a request arrives (or `STEPS_PER_HOP`): a hop to
        the event loop and back between every token would cost more than a tiny model's
        step. Arrivals wait at most one step; cancellations are seen at every step."""
        self.step(admitted)
        for _ in range(STEPS_PER_HOP - 1):
            if not self._running or self._waiting:
                return
            self.step()

    def step(self, admitted: Sequence[_Slot] = ()) -> None:
        """One scheduler step: drop cancelled rows, decode the running ones, prefill
        `admitted` and add them to the batch; then hand every row's output to its stream
        in one call to the event loop."""
        import torch

        with self._lock, torch.inference_mode():
            self._outbox = []
            self._drop([s for s in self._running if s.cancelled])
            if self._running:
                self._decode()
            admitted = [s for s in admitted if not s.cancelled]
            if admitted:
                self._prefill(admitted)
            self.steps += 1
            outbox, self._outbox = self._outbox, []
        if outbox:
            outbox[0][0].loop.call_soon_threadsafe(_deliver, outbox)

    def _drop(self, slots: Sequence[_Slot]) -> None:
        if not slots:
            return
        import torch

        gone = set(map(id, slots))
        keep = [i for i, s in enumerate(self._running) if id(s) not in gone]
        self._running = [self._running[i] for i in keep]
        if not keep:
            self._cache, self._mask = None, None
            return
        index = torch.tensor(keep, dtype=torch.long)
        self._cache.batch_select_indices(index)
        assert self._mask is not None
        self._mask = self._mask[index]
        self._trim()

    def _trim(self) -> None:
        """Cut the leading columns no remaining row uses (left padding of rows now gone)."""
        assert self._mask is not None
        used = self._mask.any(dim=0).nonzero()
        first = int(used[0]) if len(used) else 0
        if first:
            self._mask = self._mask[:, first:]
            for layer in self._cache.layers:
                layer.keys = layer.keys[:, :, first:]
                layer.values = layer.values[:, :, first:]

    def _decode(self) -> None:
        import torch

        assert self._mask is not None
        rows = self._running
        ids = torch.tensor([[s.last] for s in rows], dtype=torch.long)
        positions = torch.tensor([[s.length] for s in rows], dtype=torch.long)
        self._mask = torch.cat([self._mask, torch.ones((len(rows), 1), dtype=torch.long)], dim=1)
        out = self.model(
            input_ids=ids,
            attention_mask=self._mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_kw: self._cache},
        )
        for slot in rows:
            slot.length += 1
        self._emit(rows, out.logits[:, -1, :])

    def _prefill(self, slots: Sequence[_Slot]) -> None:
        import torch
        from transformers import DynamicCache

        pools = [s for s in slots if s.request.pool is not None]
        if pools:
            chosen = select_pool(self.model, [(s.request.layout, s.request.pool) for s in pools])  # type: ignore[misc]
            for slot, selection in zip(pools, chosen, strict=True):
                slot.selection = selection
                assert slot.request.pool is not None
                slot.layout = chosen_layout(slot.request.layout, slot.request.pool, selection.index)
        layouts = [s.layout or s.request.layout for s in slots]
        mask, positions = _left_padded(layouts)
        cache = DynamicCache(config=self.model.config)
        out = self.model(
            inputs_embeds=embed(layouts, self.table),
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_kw: cache},
        )
        for slot, layout in zip(slots, layouts, strict=True):
            slot.length = len(layout)
            if slot.request.sampling.seed is not None:
                slot.generator = torch.Generator().manual_seed(slot.request.sampling.seed)
        self._join(list(slots), cache, mask)
        self._emit(list(slots), out.logits[:, -1, :], first=True)

    def _join(self, slots: list[_Slot], cache: Any, mask: Any) -> None:
        """Add prefilled rows to the running batch, left-padding the shorter side's cache."""
        import torch

        if self._cache is None:
            self._running, self._cache, self._mask = slots, cache, mask
            return
        assert self._mask is not None
        old, new = self._mask.shape[1], mask.shape[1]
        width = max(old, new)

        def pad(t: Any, length: int) -> Any:
            if length == width:
                return t
            shape = list(t.shape)
            shape[-2 if t.dim() == 4 else -1] = width - length
            zeros = torch.zeros(shape, dtype=t.dtype)
            return torch.cat([zeros, t], dim=-2 if t.dim() == 4 else -1)

        for mine, theirs in zip(self._cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([pad(mine.keys, old), pad(theirs.keys, new)], dim=0)
            mine.values = torch.cat([pad(mine.values, old), pad(theirs.values, new)], dim=0)
        self._mask = torch.cat([pad(self._mask, old), pad(mask, new)], dim=0)
        self._running = [*self._running, *slots]

    def _emit(self, rows: Sequence[_Slot], logits: Any, first: bool = False) -> None:
        """Choose each row's next token, send it, and retire finished rows."""
        done: list[_Slot] = []
        for slot, token in zip(rows, self._sample(rows, logits), strict=True):
            sampling = slot.request.sampling
            slot.generated += 1
            slot.last = token
            finish = None
            if token in sampling.stop_token_ids:
                finish = "stop"
            elif slot.generated >= sampling.max_tokens or slot.length + 1 > self.max_positions:
                finish = "length"
            out = StepOutput([token], finish)  # type: ignore[arg-type]
            if first:
                out.selection = slot.selection
                out.prompt_tokens = slot.length
            self._outbox.append((slot, out))
            if finish is not None:
                done.append(slot)
        self._drop(done)

    def _sample(self, rows: Sequence[_Slot], logits: Any) -> Iterator[int]:
        import torch
        from transformers.generation.logits_process import (
            TemperatureLogitsWarper,
            TopPLogitsWarper,
        )

        logits = logits.float()
        greedy = logits.argmax(dim=-1).tolist()
        for i, slot in enumerate(rows):
            s = slot.request.sampling
            if s.greedy:
                yield int(greedy[i])
                continue
            scores = logits[i : i + 1]
            if s.temperature != 1.0:
                scores = TemperatureLogitsWarper(s.temperature)(None, scores)
            if s.top_p < 1.0:
                scores = TopPLogitsWarper(s.top_p)(None, scores)
            probs = torch.softmax(scores, dim=-1)
            yield int(torch.multinomial(probs[0], 1, generator=slot.generator))
