"""The GPU generation engine: vLLM's async engine fed with prompt embeddings, in the replica.

vLLM's former prompt adapters (placeholder positions filled with each adapter's rows) are gone
from vLLM; what it offers instead is an embeddings prompt (`vllm.inputs.EmbedsPrompt`,
`{"prompt_embeds": [T, d] tensor}`, accepted when the engine is built with
`AsyncEngineArgs(enable_prompt_embeds=True)`; vllm-project/vllm
`vllm/renderers/base.py::_process_embeds`, `vllm/engine/arg_utils.py::AsyncEngineArgs`). Every
soft-prompt method reduces to a `PromptLayout`, so the engine writes each request's layout into
input embeddings (`layout.embed`: token rows from the checkpoint's input embedding matrix, soft
spans in their own positions) and hands them to vLLM, whose continuous batching then mixes
requests with different soft prompts, or none, in one forward as a matter of course.

The engine is built as Ray Serve's own LLM deployments build theirs (ray-project/ray
`python/ray/llm/_internal/serve/engines/vllm/vllm_engine.py::VLLMEngine._start_async_llm_engine`:
`AsyncEngineArgs` -> `AsyncLLM`, `vllm/v1/engine/async_llm.py`), inside the replica process; the
model itself runs in vLLM's engine-core process on the replica's GPU.

Choices, and why:
- vLLM returns token ids only (`detokenize=False`, `skip_tokenizer_init=True`): the lead's common
  code detokenises and cuts at stop strings the same way for both engines.
- `ignore_eos=True`: a request stops on `Sampling.stop_token_ids` alone (the generator puts the
  EOS ids there unless the client asked to ignore them), as the transformers engine does.
- `RequestOutputKind.DELTA`: each vLLM output carries only the step's new token ids, which is
  what a `StepOutput` is.
- The embedding table stays in host memory by default (`table_device="cpu"`): vLLM moves every
  `prompt_embeds` tensor to the CPU before it crosses to the engine-core process (the comment in
  `_process_embeds`), so a GPU-side lookup would only add a device-to-host copy and take GPU
  memory from the KV cache. `table_device="cuda"` keeps it on the GPU for whoever measures
  otherwise.
- IDP pools: the selection pass needs attention probabilities, which vLLM's kernels never
  materialise, so it runs on a transformers copy of the backbone cut to its first `layer + 1`
  layers (`hf_engine.select_pool`), loaded on first use next to vLLM. Its cost is that share of
  the weights plus the input embedding and output matrices (for the paper's default, the last
  layer, a whole second copy: lower `gpu_memory_utilization` by that much) and one
  [heads, T, T] attention map per row at the selection layer. Pool requests waiting for
  selection are batched together (`selection_batch` rows per pass).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from promptserve.models.llm.backbone import LlmBackboneSpec, weight_files
from promptserve.models.llm.generate.engine import EngineFull, GenerationEngine, eos_ids
from promptserve.models.llm.generate.layout import PromptLayout, embed
from promptserve.models.llm.generate.params import (
    EngineRequest,
    FinishReason,
    PoolChoice,
    Sampling,
    Selection,
    StepOutput,
)

__all__ = ["VllmEngine", "VllmOptions", "load_embedding_table"]

log = logging.getLogger("promptserve.generate")

#: files a Hub snapshot needs here: config, generation config, weights (no tokenizer: vLLM
#: runs with skip_tokenizer_init, and the generator loads its own)
_SNAPSHOT_FILES = ["*.json", "*.safetensors"]


class VllmOptions(BaseModel):
    """vLLM engine options (the generator config's `vllm:` section). Unknown keys are refused;
    anything else `AsyncEngineArgs` takes goes in `engine_args`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gpu_memory_utilization: float = Field(
        0.85,
        gt=0,
        le=1,
        description="Share of the GPU vLLM may take (weights + KV cache). Leave room for the "
        "IDP selection model when pools are served.",
    )
    max_num_seqs: int = Field(256, ge=1, description="Requests vLLM decodes together.")
    max_model_len: int | None = Field(
        None, ge=1, description="Context length; None: the model's own."
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    enforce_eager: bool = Field(False, description="No CUDA graphs (faster start, slower decode).")
    tensor_parallel_size: int = Field(1, ge=1)
    table_device: Literal["cpu", "cuda"] = Field(
        "cpu", description="Where the input embedding matrix for layouts is kept."
    )
    selection_batch: int = Field(8, ge=1, description="Pool requests per selection pass.")
    engine_args: dict[str, Any] = Field(
        default_factory=dict, description="More vllm AsyncEngineArgs fields, passed as given."
    )


def resolve_model_dir(spec: LlmBackboneSpec) -> Path:
    """The backbone's local folder: itself, or the Hub snapshot at its revision (downloaded
    once; vLLM and the embedding table then read the same files)."""
    if spec.source == "local-dir":
        return spec.path
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(spec.name, revision=spec.revision, allow_patterns=_SNAPSHOT_FILES)
    )


def load_embedding_table(folder: Path, dtype: Any = None, device: str = "cpu") -> Any:
    """The input embedding matrix [vocab, d] read straight from the checkpoint's safetensors:
    `*embed_tokens.weight`, or `lm_head.weight` for a model that ties it to the output matrix
    and stores only that. Reads one tensor, not the model."""
    from safetensors import safe_open

    files = [p for p in weight_files(folder) if p.suffix == ".safetensors"]
    if not files:
        raise FileNotFoundError(f"{folder} has no .safetensors weights for the embedding table")
    found: dict[str, Path] = {}
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
                if key.endswith("embed_tokens.weight") or key == "lm_head.weight":
                    found[key] = path
    names = sorted((k for k in found if k.endswith("embed_tokens.weight")), key=len)
    name = names[0] if names else ("lm_head.weight" if "lm_head.weight" in found else None)
    if name is None:
        raise KeyError(f"{folder}: no embed_tokens.weight (nor a tied lm_head.weight) found")
    with safe_open(str(found[name]), framework="pt", device=device) as f:
        table = f.get_tensor(name)
    return table if dtype is None else table.to(dtype)


def _eos_ids(folder: Path) -> tuple[int, ...]:
    """EOS ids of the checkpoint's generation config (what the generator stops on)."""
    path = folder / "generation_config.json"
    if not path.is_file():
        return ()
    return eos_ids(json.loads(path.read_text()).get("eos_token_id"))


@dataclasses.dataclass
class _PendingSelection:
    layout: PromptLayout
    pool: PoolChoice
    future: asyncio.Future[Selection]


class VllmEngine(GenerationEngine):
    """vLLM's `AsyncLLM` behind the `GenerationEngine` interface (see the module docstring).

    `max_waiting` bounds the requests beyond vLLM's `max_num_seqs` (those its scheduler would
    queue) plus the pool requests waiting for their selection pass; past it `stream` raises
    EngineFull.
    """

    def __init__(
        self,
        spec: LlmBackboneSpec | str | Path,
        options: VllmOptions | None = None,
        *,
        max_waiting: int = 256,
    ) -> None:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.options = options or VllmOptions()
        self.max_waiting = max_waiting
        if isinstance(spec, LlmBackboneSpec):
            self.folder = resolve_model_dir(spec)
        else:
            self.folder = Path(spec)
        o = self.options
        args = AsyncEngineArgs(
            model=str(self.folder),
            skip_tokenizer_init=True,
            enable_prompt_embeds=True,
            dtype=o.dtype,
            gpu_memory_utilization=o.gpu_memory_utilization,
            max_num_seqs=o.max_num_seqs,
            max_model_len=o.max_model_len,
            enforce_eager=o.enforce_eager,
            tensor_parallel_size=o.tensor_parallel_size,
            **o.engine_args,
        )
        self.engine = AsyncLLM.from_engine_args(args)
        model_config = self.engine.model_config
        self.dtype = model_config.dtype
        self.max_positions = int(model_config.max_model_len)
        self.hidden_size = int(model_config.get_hidden_size())
        self.num_layers = int(model_config.hf_config.num_hidden_layers)
        self.eos_token_ids = _eos_ids(self.folder)
        self.table = load_embedding_table(self.folder, self.dtype, o.table_device)
        self._ids = itertools.count()
        self._inflight = 0  # requests inside `stream`, selection included
        self._active = 0  # requests submitted to vLLM and not finished
        self._pending: list[_PendingSelection] = []
        self._selector: asyncio.Task[None] | None = None
        self._selection_model: Any = None
        self._selection_depth = 0

    # -- the public face ---------------------------------------------------------------------
    @property
    def active(self) -> int:
        """Requests vLLM holds now (running or in its own queue)."""
        return self._active

    async def stream(self, request: EngineRequest) -> AsyncIterator[StepOutput]:
        if self._inflight - self.options.max_num_seqs >= self.max_waiting:
            raise EngineFull(f"{self._inflight} requests are in the generator (vLLM)")
        self._inflight += 1
        try:
            layout, selection = request.layout, None
            if request.pool is not None:
                pool = self._resolve_layer(request.pool)
                selection = await self._select(layout, pool)
                from promptserve.models.llm.generate.hf_engine import chosen_layout

                layout = chosen_layout(layout, pool, selection.index)
            outputs = self._generate(layout, request.sampling, request.request_id, selection)
            try:
                async for out in outputs:
                    yield out
            finally:  # closed early: abort in vLLM now, not when the generator is collected
                await outputs.aclose()
        finally:
            self._inflight -= 1

    async def check_health(self) -> None:
        """vLLM's own probe (raises when its engine-core process died)."""
        await self.engine.check_health()

    async def close(self) -> None:
        if self._selector is not None:
            self._selector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._selector
            self._selector = None
        self.engine.shutdown()
        self._selection_model = None

    # -- generation --------------------------------------------------------------------------
    def sampling_params(self, sampling: Sampling) -> Any:
        """vLLM's SamplingParams for `sampling`: token ids only, stop ids only, new tokens
        per output (see the module docstring)."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(
            n=1,
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=sampling.seed,
            stop_token_ids=list(sampling.stop_token_ids),
            ignore_eos=True,
            detokenize=False,
            skip_special_tokens=False,
            output_kind=RequestOutputKind.DELTA,
        )

    def prompt(self, layout: PromptLayout) -> dict[str, Any]:
        """The layout as vLLM's EmbedsPrompt: its input embeddings [T, d]."""
        return {"prompt_embeds": embed([layout], self.table)[0]}

    async def _generate(
        self,
        layout: PromptLayout,
        sampling: Sampling,
        request_id: str,
        selection: Selection | None = None,
    ) -> AsyncGenerator[StepOutput, None]:
        """The request's outputs from vLLM; the first carries the prompt's length and the
        pool selection. Closing early aborts the request in vLLM."""
        rid = f"{request_id or 'gen'}-{next(self._ids)}"
        prompt = self.prompt(layout)
        outputs = self.engine.generate(prompt, self.sampling_params(sampling), rid)
        finished, first = False, True
        self._active += 1
        try:
            async for result in outputs:
                done = bool(result.finished)
                completion = result.outputs[0]
                step = StepOutput(list(completion.token_ids), _finish(completion, done))
                if first:
                    step.prompt_tokens, step.selection, first = len(layout), selection, False
                finished = done
                yield step
                if done:
                    return
        finally:
            self._active -= 1
            if not finished:  # the client went away: vLLM frees the request's slot and cache
                await outputs.aclose()  # vLLM's generate aborts on GeneratorExit
                with contextlib.suppress(Exception):
                    await self.engine.abort(rid)

    # -- IDP selection -----------------------------------------------------------------------
    def _resolve_layer(self, pool: PoolChoice) -> PoolChoice:
        """The pool with its layer as a non-negative index (None or -1: the last layer), so a
        cut copy of the model reads the same layer."""
        layer = self.num_layers - 1 if pool.layer is None else pool.layer
        if layer < 0:
            layer += self.num_layers
        if not 0 <= layer < self.num_layers:
            raise ValueError(f"selection layer {pool.layer} outside 0..{self.num_layers - 1}")
        return dataclasses.replace(pool, layer=layer)

    async def _select(self, layout: PromptLayout, pool: PoolChoice) -> Selection:
        loop = asyncio.get_running_loop()
        pending = _PendingSelection(layout, pool, loop.create_future())
        self._pending.append(pending)
        if self._selector is None or self._selector.done():
            self._selector = loop.create_task(self._run_selections())
        return await pending.future

    async def _run_selections(self) -> None:
        """Selection passes over the pool requests waiting, `selection_batch` at a time."""
        from promptserve.models.llm.generate.hf_engine import select_pool

        size = self.options.selection_batch
        while self._pending:
            batch = [p for p in self._pending[:size] if not p.future.done()]
            del self._pending[:size]
            if not batch:
                continue
            try:
                depth = max(p.pool.layer for p in batch) + 1
                model = await asyncio.to_thread(self.selection_model, depth)
                chosen = await asyncio.to_thread(
                    select_pool, model, [(p.layout, p.pool) for p in batch]
                )
            except Exception as exc:  # fails these requests, not the engine
                log.exception("IDP selection failed")
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(RuntimeError(f"selection failed: {exc}"))
                continue
            for p, selection in zip(batch, chosen, strict=True):
                if not p.future.done():
                    p.future.set_result(selection)

    def selection_model(self, depth: int) -> Any:
        """A transformers copy of the backbone's first `depth` layers on the engine's device
        and dtype (loaded once; again, deeper, if a pool reads a later layer)."""
        if self._selection_model is not None and self._selection_depth >= depth:
            return self._selection_model
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(self.folder, local_files_only=True)
        config.num_hidden_layers = depth
        if isinstance(getattr(config, "layer_types", None), list):
            config.layer_types = config.layer_types[:depth]
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self._selection_model = None  # a shallower copy goes before the deeper one loads
        model: Any = AutoModelForCausalLM.from_pretrained(
            self.folder, config=config, dtype=self.dtype, local_files_only=True
        )
        self._selection_model = model.to(device).eval()
        self._selection_depth = depth
        return self._selection_model


def _finish(completion: Any, done: bool) -> FinishReason | None:
    """vLLM's finish reason as ours: "length" stays, a stop id is "stop"; an aborted or failed
    request is an error, not a finish."""
    if not done:
        return None
    reason = completion.finish_reason
    if reason == "length":
        return "length"
    if reason == "stop":
        return "stop"
    raise RuntimeError(f"vLLM ended the request: {reason}")
