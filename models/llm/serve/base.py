"""What the LLM task routes share on top of the common gateway: the bundle's LLM section, the
capability gate, text limits, the encoder call, and the index a request names (checked
against the backbone and the prompt artifact its vectors came from)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from promptserve.models.llm.bundle import llm_config
from promptserve.models.llm.serve.calls import EmbedCall, Reps, Side
from promptserve.serving.auth import ApiKeys
from promptserve.serving.deployments.gateway import Gateway
from promptserve.serving.errors import IndexMismatch, InvalidInput
from promptserve.serving.index.catalog import IndexRecord
from promptserve.serving.store import PromptRef, shown
from promptserve.types import ModelInfo, PromptInfo

INDEX_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
METHOD = "promptreps"
TASKS = ("embed", "retrieve")
GENERATION_METHODS = ("soft-prompt", "idp", "hard-prompt")


def check_index_id(index_id: str) -> str:
    if not INDEX_ID.fullmatch(index_id):
        raise InvalidInput(
            f"invalid index_id {shown(index_id)}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            param="index_id",
        )
    return index_id


class LlmGateway(Gateway):
    def __init__(
        self,
        config: Any,
        encoder: Any | None,
        keys: ApiKeys,
        services: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(config, encoder, keys, services)
        self.llm = llm_config(self.bundle)
        self.indexer = self.services["indexer"]

    def check_capability(self, task: str, info: PromptInfo) -> None:
        if task == "generate":
            if info.method not in GENERATION_METHODS:
                raise InvalidInput(
                    f"prompt {info.prompt_id!r} is a {info.method!r} artifact for {info.task!r}, "
                    f"not a generation prompt ({', '.join(GENERATION_METHODS)})",
                    param="model",
                )
            return
        if info.method != METHOD or task not in TASKS:
            raise InvalidInput(
                f"prompt {info.prompt_id!r} is a {info.method!r} artifact for {info.task!r}; "
                f"this server represents texts with {METHOD} prompts (register one: "
                "`promptserve prompts add` with a PromptReps artifact)",
                param="prompt_id",
            )

    def model_info(self) -> ModelInfo:
        limits = self.config.limits
        return ModelInfo(
            backbone=self.bundle.backbone_id,
            family="llm",
            embed_dim=self.llm.hidden_size,
            engine=self.config.engine.name,
            max_texts_per_request=limits.max_texts_per_request,
            max_body_bytes=limits.max_body_bytes,
            vocab_size=self.llm.vocab_size,
            tasks=[*TASKS, *(["generate"] if "generator" in self.services else [])],
        )

    def check_texts(self, texts: Sequence[str], param: str) -> None:
        """Bounds on what one request makes the tokenizer and the model do."""
        limits = self.config.limits
        if len(texts) > limits.max_texts_per_request:
            raise InvalidInput(
                f"{len(texts)} {param} in one request, above the limit of "
                f"{limits.max_texts_per_request}; split the list (the SDK does this for you)",
                param=param,
            )
        for i, text in enumerate(texts):
            if len(text) > limits.max_document_chars:
                raise InvalidInput(
                    f"{param}[{i}] has {len(text)} characters, above the limit of "
                    f"{limits.max_document_chars}; the model reads only its first tokens, so "
                    "cut it (or split it into passages)",
                    param=f"{param}[{i}]",
                )
            if not text.strip():
                raise InvalidInput(f"{param}[{i}] is empty", param=f"{param}[{i}]")

    async def represent(
        self,
        ref: PromptRef,
        texts: Sequence[str],
        side: Side,
        *,
        dense: bool = True,
        sparse: bool = True,
        tokens: bool = False,
    ) -> list[Reps]:
        """The encoder's representations of `texts`, counted against the in-flight bound."""
        async with self.admitted(len(texts)):
            call = EmbedCall(ref, tuple(texts), side, dense=dense, sparse=sparse, tokens=tokens)
            reps: list[Reps] = await self.encoder.call("embed", call)
        return reps

    async def index_record(self, index_id: str) -> IndexRecord:
        record: IndexRecord = await self.indexer.get.remote(check_index_id(index_id))
        return record

    async def index_prompt(self, index_id: str, task: str) -> tuple[IndexRecord, PromptRef]:
        """The index a request names and the prompt its vectors came from: a 409 if this
        server's backbone or the prompt's current content differ from what built it (the
        request's vectors would not be comparable with the stored ones)."""
        record = await self.index_record(index_id)
        if record.backbone != self.bundle.backbone_id:
            raise IndexMismatch(
                f"index {index_id!r} was built with backbone {record.backbone!r}, but this "
                f"server runs {self.bundle.backbone_id!r}: query it on a server with that "
                "backbone, or rebuild it here",
                param="index_id",
            )
        info, ref = await self.prompt(record.prompt_id, task)
        if info.content_id != record.prompt_content_id:
            raise IndexMismatch(
                f"index {index_id!r} was built with prompt {record.prompt_id!r} content "
                f"{record.prompt_content_id[:12]}, but that prompt id now holds content "
                f"{info.content_id[:12]}: register the original artifact again, or rebuild "
                "the index with the new prompt",
                param="index_id",
            )
        return record, ref
