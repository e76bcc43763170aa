"""The LLM encoder deployment: PromptReps representations of texts, batched by tokens across
requests and prompt artifacts.

Each text becomes one token sequence (its prompt's prefix + the truncated text + suffix,
models/llm/promptreps.py), and sequences from every request and every prompt share one queue.
A batch closes on a token budget (`encoder.max_batch_tokens`), not on a count: one forward pass
costs rows x the longest row, so inside a batch the sequences are sorted by length and cut into
buckets whose padded area fits the budget. The graph returns the dense vector and the
`log1p(relu(logits))` row at each sequence's last token; the sparse selection (the text's own
word ids, top-k) runs here on those rows.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from promptserve.models.artifacts import ArtifactError, PromptArtifact
from promptserve.models.llm.artifacts import SIDES, LlmArtifactManifest, PromptRepsParams, validate
from promptserve.models.llm.bundle import llm_config
from promptserve.models.llm.generate.artifacts import validate_generation
from promptserve.models.llm.promptreps import (
    collate,
    encode_texts,
    prompt_ids,
    sparse_terms,
)
from promptserve.models.llm.runtime import LlmGraphs
from promptserve.models.llm.serve.calls import EmbedCall, Reps, Side
from promptserve.models.llm.tokenizer import LlmTokenizer
from promptserve.serving.config import AppConfig
from promptserve.serving.deployments.encoder import Encoder
from promptserve.serving.metrics import metrics
from promptserve.serving.store import PromptRef


@dataclass(frozen=True)
class LoadedPrompt:
    """A registered prompt, tokenized once per replica."""

    manifest: LlmArtifactManifest
    params: PromptRepsParams
    sides: dict[Side, tuple[list[int], list[int]]]  # side -> (prefix ids, suffix ids)

    def max_len(self, side: Side) -> int:
        return self.params.max_len(side)

    def longest(self) -> int:
        """The longest sequence this prompt can make (prefix + max text + suffix)."""
        return max(
            len(pre) + self.max_len(side) + len(suf) for side, (pre, suf) in self.sides.items()
        )


def bucket(lengths: list[int], budget: int) -> list[list[int]]:
    """Positions of `lengths` grouped so that each group's rows x longest row (its padded
    area) stays within `budget`, shortest first: similar lengths share a forward pass."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) + 1) * lengths[i] > budget:
            groups.append(current)
            current = []
        current.append(i)
    if current:
        groups.append(current)
    return groups


def runs(lengths: list[int], budget: int) -> list[range]:
    """Consecutive positions of `lengths` cut into runs of at most `budget` tokens (a longer
    single sequence is a run of its own: registration keeps every sequence within the budget)."""
    out: list[range] = []
    start, total = 0, 0
    for i, n in enumerate(lengths):
        if i > start and total + n > budget:
            out.append(range(start, i))
            start, total = i, 0
        total += n
    if start < len(lengths):
        out.append(range(start, len(lengths)))
    return out


def _tokens(item: list[list[int]]) -> int:
    return sum(len(seq) for seq in item)


class LlmEncoder(Encoder):
    def __init__(self, config: AppConfig) -> None:
        super().__init__(config)
        self.llm = llm_config(self.bundle)
        self.tokenizer = LlmTokenizer.from_file(self.bundle.dir / self.llm.tokenizer_file)
        self.graphs = LlmGraphs(self.engine)
        self.graphs.warmup()
        self.budget = config.encoder.max_batch_tokens
        self._prompts: OrderedDict[str, LoadedPrompt] = OrderedDict()
        # one batcher item is one call's sequences (up to the budget): a future per call, not
        # per text; its size is its tokens
        self._sequences = self.batcher(self._run_batch, size_fn=_tokens)
        # the batcher counts tokens: its size is the token budget, not the image batch size
        self._sequences.set_max_batch_size(self.budget)
        self._batchers.remove(self._sequences)

    # -- registration ----------------------------------------------------------------------
    def artifact_features(self, artifact: PromptArtifact) -> np.ndarray:
        """A representation prompt has nothing to precompute beyond its token ids (done per
        replica, on first use); what is checked here is that it fits this bundle and the
        token budget, so a registered prompt can always be served. A generation prompt is
        checked against the backbone's sizes; the generator reads it from the store."""
        if artifact.manifest.task == "generate":
            llm = self.llm
            validate_generation(artifact, llm.hidden_size, llm.num_layers, llm.num_heads)
            return np.zeros((0,), np.float32)
        validate(artifact, self.llm)
        loaded = self._tokenize(artifact)
        longest = loaded.longest()
        if longest > self.budget:
            raise ArtifactError(
                f"the prompt makes sequences of up to {longest} tokens (prefix + max length + "
                f"suffix), above the encoder's token budget encoder.max_batch_tokens="
                f"{self.budget}; lower query_max_len/passage_max_len or raise the budget"
            )
        if longest > self.llm.max_positions:
            raise ArtifactError(
                f"the prompt makes sequences of up to {longest} tokens, beyond the model's "
                f"{self.llm.max_positions} positions; lower query_max_len/passage_max_len"
            )
        return np.zeros((0,), np.float32)

    def _tokenize(self, artifact: PromptArtifact) -> LoadedPrompt:
        manifest = artifact.manifest
        assert isinstance(manifest, LlmArtifactManifest)
        sides = {side: prompt_ids(self.tokenizer, manifest, side) for side in SIDES}
        return LoadedPrompt(manifest, PromptRepsParams.model_validate(manifest.hparams), sides)

    async def _prompt(self, ref: PromptRef) -> LoadedPrompt:
        hit = self._prompts.get(ref.content_id)
        if hit is not None:
            self._prompts.move_to_end(ref.content_id)
            return hit
        artifact, _ = await asyncio.to_thread(self.store.load, ref.prompt_id, ref.content_id)
        loaded = await asyncio.to_thread(self._tokenize, artifact)
        self._prompts[ref.content_id] = loaded
        metrics().artifact_loads.inc()
        while len(self._prompts) > self.config.prompts.max_loaded:
            self._prompts.popitem(last=False)
            metrics().artifact_evictions.inc()
        return loaded

    # -- the task ----------------------------------------------------------------------------
    @Encoder.sheds
    async def embed(self, call: EmbedCall) -> list[Reps]:
        """Each text's representations, in order."""
        with self.admitted(len(call.texts)):
            prompt = await self._prompt(call.ref)
            prefix, suffix = prompt.sides[call.side]
            encoded = await asyncio.to_thread(
                encode_texts,
                self.tokenizer,
                prefix,
                suffix,
                list(call.texts),
                prompt.max_len(call.side),
            )
            parts = await asyncio.gather(
                *(self._sequences([encoded[i].ids for i in part])
                  for part in runs([len(e.ids) for e in encoded], self.budget))
            )  # fmt: skip
        rows = [row for part in parts for row in part]
        return await asyncio.to_thread(self._reps, call, prompt, encoded, rows)

    def _reps(
        self,
        call: EmbedCall,
        prompt: LoadedPrompt,
        encoded: list,
        rows: list[tuple[np.ndarray, np.ndarray]],
    ) -> list[Reps]:
        out = []
        for text, e, (dense, sparse) in zip(call.texts, encoded, rows, strict=True):
            indices = values = None
            strings = None
            if call.sparse:
                indices, values = sparse_terms(self.tokenizer, prompt.params, sparse, text)
                if call.tokens:
                    strings = [self.tokenizer.id_to_token(int(i)) or "" for i in indices]
            out.append(
                Reps(
                    dense=dense if call.dense else None,
                    indices=indices,
                    values=values,
                    tokens=len(e.ids),
                    truncated=e.truncated,
                    token_strings=strings,
                )
            )
        return out

    async def _run_batch(
        self, items: list[list[list[int]]]
    ) -> list[list[tuple[np.ndarray, np.ndarray]]]:
        """One closed batch (the sequences of several calls): length buckets within the token
        budget, each one graph call; each item's rows back in its order."""
        rows = await asyncio.to_thread(self._forward, [seq for item in items for seq in item])
        out, start = [], 0
        for item in items:
            out.append(rows[start : start + len(item)])
            start += len(item)
        return out

    def _forward(self, seqs: list[list[int]]) -> list[tuple[np.ndarray, np.ndarray]]:
        out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(seqs)
        m = metrics()
        for group in bucket([len(s) for s in seqs], self.budget):
            ids, mask = collate(
                [seqs[i] for i in group], self.llm.pad_token_id, self.llm.pad_to_multiple_of
            )
            dense, sparse = self.graphs.encode(ids, mask)
            m.batch_size.observe(len(group))
            m.tokens.inc(int(mask.sum()))
            for row, i in enumerate(group):
                out[i] = (dense[row], sparse[row])
        return [o for o in out if o is not None]

    def reconfigure(self, user_config: dict) -> None:
        """Batch settings: `max_batch_tokens` is this encoder's budget (live)."""
        super().reconfigure(user_config)
        self.budget = int(user_config.get("max_batch_tokens", self.budget))
        self._sequences.set_max_batch_size(self.budget)
        self._sequences.set_batch_wait_timeout_s(self.batch_wait_timeout_s)
