"""A generation request as an engine layout: the chat template or the plain prompt, with the
registered prompt artifact (soft prompt, IDP pool, hard prompt) placed where its method puts
it (models/llm/generate/artifacts.py says where each goes and why)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from promptserve.models.artifacts import PromptArtifact
from promptserve.models.llm.generate.artifacts import (
    HardPromptManifest,
    PoolManifest,
    SoftPromptManifest,
    pool_prompts,
    soft_prompt,
)
from promptserve.models.llm.generate.layout import PromptLayout, SoftSpan
from promptserve.models.llm.generate.params import PoolChoice

__all__ = ["Rendered", "render"]

# Stands where a system-placed soft prompt goes while the chat template renders; the rendered
# text is split there and the two halves tokenized apart. Printable on purpose: templates
# `trim` contents, and str.strip() takes control characters for whitespace.
_SLOT = "[[promptserve:soft-prompt]]"


@dataclass(frozen=True)
class Rendered:
    layout: PromptLayout
    pool: PoolChoice | None = None


def render(
    tokenizer: Any,
    artifact: PromptArtifact | None,
    *,
    prompt: str | None = None,
    messages: Sequence[dict[str, str]] | None = None,
    num_layers: int,
) -> Rendered:
    """The layout of a completion (`prompt`) or chat (`messages`) request run with `artifact`
    (None: the bare backbone). `tokenizer` is the backbone's transformers tokenizer (its chat
    template renders messages, as vLLM's chat route does)."""
    manifest = artifact.manifest if artifact is not None else None
    if isinstance(manifest, HardPromptManifest):
        if messages is not None:
            messages = _with_system(messages, manifest.text, manifest.role)
        else:
            prompt = manifest.text + (prompt or "")
    soft_system = isinstance(manifest, SoftPromptManifest) and manifest.placement == "system"
    if messages is not None:
        if soft_system:
            messages = _with_system(messages, _SLOT, "system")
        text = tokenizer.apply_chat_template(
            [dict(m) for m in messages], tokenize=False, add_generation_prompt=True
        )
        # the template writes BOS itself: tokenize without adding specials
        parts = text.split(_SLOT) if soft_system else [text]
        if soft_system and len(parts) != 2:
            raise ValueError(
                "this backbone's chat template does not render a system message where a "
                "system-placed soft prompt could go"
            )
        pieces = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in parts]
    else:
        pieces = [tokenizer(prompt or "")["input_ids"]]
    ids = tuple(i for piece in pieces for i in piece)
    if soft_system:
        assert artifact is not None
        return Rendered(PromptLayout(ids, (SoftSpan(len(pieces[0]), soft_prompt(artifact)),)))
    if isinstance(manifest, SoftPromptManifest):  # prefix: before everything, BOS included
        assert artifact is not None
        return Rendered(PromptLayout(ids, (SoftSpan(0, soft_prompt(artifact)),)))
    if isinstance(manifest, PoolManifest):
        assert artifact is not None
        layer = manifest.layer if manifest.layer is not None else num_layers - 1
        heads = tuple(manifest.heads) if manifest.heads is not None else None
        prompts = tuple(np.asarray(p) for p in pool_prompts(artifact))
        return Rendered(PromptLayout(ids), PoolChoice(prompts, 0, layer, heads))
    return Rendered(PromptLayout(ids))


def _with_system(messages: Sequence[dict[str, str]], text: str, role: str) -> list[dict[str, str]]:
    """`messages` with `text` as the system message: before the user's own system text when
    there is one (in the same turn), else as a new first turn. role `prefix` puts it before
    the first user message's text instead."""
    out = [dict(m) for m in messages]
    if role == "prefix":
        for m in out:
            if m["role"] == "user":
                m["content"] = text + m["content"]
                return out
        return out
    if out and out[0]["role"] in ("system", "developer"):
        out[0] = {"role": "system", "content": text + "\n\n" + out[0]["content"]}
        return out
    return [{"role": "system", "content": text}, *out]
