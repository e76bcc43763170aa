"""The generation prompt artifacts of the LLM family: soft prompts, IDP prompt pools and hard
prompts. All three are ordinary promptserve artifacts (manifest + safetensors, content-addressed;
models/artifacts.py), registered with `POST /v1/prompts` and named by `model` in the
OpenAI-compatible routes.

- `soft-prompt`: learned input embeddings `prompt_embeddings [n, d]`. `placement: prefix` puts
  them before every input embedding, BOS included (PEFT `PROMPT_TUNING`,
  peft/peft_model.py::PeftModelForCausalLM.forward); `placement: system` puts them where the
  chat's system message goes (DRO safety prompts, chujiezheng/LLM-Safeguard).
- `idp`: a pool of m soft prompts `prompt.0 .. prompt.{m-1}` ([n_i, d] each) and where the
  selection reads attention (`layer`, `heads`; models/llm/generate/selection.py). Our format:
  IDP publishes none.
- `hard-prompt`: text from a prompt optimiser, a system message (chat) or a prefix
  (completions); its content id versions it.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from promptserve.models.artifacts import (
    ArtifactError,
    ArtifactManifest,
    ArtifactMismatch,
    PromptArtifact,
)

__all__ = [
    "GENERATION_METHODS",
    "HardPromptManifest",
    "PoolManifest",
    "SoftPromptManifest",
    "pool_prompts",
    "soft_prompt",
    "validate_generation",
]

MAX_SOFT_TOKENS = 4096
MAX_POOL = 256
MAX_HARD_PROMPT_CHARS = 100_000
Placement = Literal["prefix", "system"]


class _GenerationManifest(ArtifactManifest):
    family: Literal["llm"] = "llm"
    task: Literal["generate"] = "generate"


class SoftPromptManifest(_GenerationManifest):
    """One learned soft prompt: tensor `prompt_embeddings [num_tokens, hidden_size]`."""

    method: Literal["soft-prompt"] = "soft-prompt"
    num_tokens: int = Field(ge=1, le=MAX_SOFT_TOKENS)
    placement: Placement = Field(
        "prefix",
        description="prefix: before every input embedding, BOS included (PEFT prompt tuning); "
        "system: in the chat's system turn (DRO).",
    )


class PoolManifest(_GenerationManifest):
    """An IDP prompt pool: tensors `prompt.{i}` [token_counts[i], hidden_size], i < m."""

    method: Literal["idp"] = "idp"
    token_counts: list[int] = Field(min_length=2, max_length=MAX_POOL)
    layer: int | None = Field(
        None, description="Decoder layer whose attention selects (0-based; None: the last)."
    )
    heads: list[int] | None = Field(
        None, min_length=1, description="Heads averaged at that layer (None: all)."
    )
    placement: Literal["prefix"] = Field(
        "prefix", description="The chosen prompt goes before the input, BOS included."
    )

    @model_validator(mode="after")
    def _counts(self) -> PoolManifest:
        if any(n < 1 or n > MAX_SOFT_TOKENS for n in self.token_counts):
            raise ValueError(f"token_counts must each be in 1..{MAX_SOFT_TOKENS}")
        return self


class HardPromptManifest(_GenerationManifest):
    """Text from a prompt optimiser; no tensors."""

    method: Literal["hard-prompt"] = "hard-prompt"
    text: str = Field(min_length=1, max_length=MAX_HARD_PROMPT_CHARS)
    role: Literal["system", "prefix"] = Field(
        "system",
        description="system: the chat's system message (and a prefix for completions); "
        "prefix: text put before the prompt or the first user message.",
    )


GENERATION_METHODS: dict[str, type[ArtifactManifest]] = {
    "soft-prompt": SoftPromptManifest,
    "idp": PoolManifest,
    "hard-prompt": HardPromptManifest,
}


def soft_prompt(artifact: PromptArtifact) -> np.ndarray:
    """The soft prompt [n, d] of a `soft-prompt` artifact, float32."""
    return np.asarray(artifact.tensors["prompt_embeddings"], dtype=np.float32)


def pool_prompts(artifact: PromptArtifact) -> list[np.ndarray]:
    """The pool's prompts, in order, float32."""
    manifest = artifact.manifest
    assert isinstance(manifest, PoolManifest)
    return [
        np.asarray(artifact.tensors[f"prompt.{i}"], dtype=np.float32)
        for i in range(len(manifest.token_counts))
    ]


def validate_generation(
    artifact: PromptArtifact, hidden_size: int, num_layers: int | None, num_heads: int | None
) -> None:
    """Raise ArtifactError unless the artifact can run on a backbone of these sizes;
    ArtifactMismatch (a 409) when its width is another model's."""
    manifest = artifact.manifest
    expected: dict[str, tuple[int, ...]] = {}
    if isinstance(manifest, SoftPromptManifest):
        expected = {"prompt_embeddings": (manifest.num_tokens, hidden_size)}
    elif isinstance(manifest, PoolManifest):
        expected = {f"prompt.{i}": (n, hidden_size) for i, n in enumerate(manifest.token_counts)}
        if num_layers and manifest.layer is not None and not 0 <= manifest.layer < num_layers:
            raise ArtifactError(
                f"layer {manifest.layer} is not a layer of this backbone (0..{num_layers - 1})"
            )
        bad = [h for h in manifest.heads or () if num_heads and not 0 <= h < num_heads]
        if bad:
            raise ArtifactError(f"heads {bad} are not heads of this backbone ({num_heads} heads)")
    elif isinstance(manifest, HardPromptManifest):
        if artifact.tensors:
            raise ArtifactError("a hard prompt has no tensors")
        return
    else:
        raise ArtifactError(f"{manifest.method!r} is not a generation prompt")
    if sorted(artifact.tensors) != sorted(expected):
        raise ArtifactError(
            f"a {manifest.method} artifact holds tensors {sorted(expected)}, got "
            f"{sorted(artifact.tensors)}"
        )
    for name, shape in expected.items():
        tensor = artifact.tensors[name]
        if tensor.ndim != 2 or tensor.shape[0] != shape[0]:
            raise ArtifactError(f"{name} has shape {list(tensor.shape)}; expected {list(shape)}")
        if tensor.shape[1] != hidden_size:
            raise ArtifactMismatch(
                f"{name} is {tensor.shape[1]} wide, but this backbone's hidden size is "
                f"{hidden_size}: the prompt was trained for another model"
            )
        if not np.isfinite(tensor).all():
            raise ArtifactError(f"{name} holds NaN or infinite values")


def manifest_for(data: dict[str, Any]) -> type[ArtifactManifest] | None:
    """The generation manifest class `data` names by `method`, or None."""
    return GENERATION_METHODS.get(str(data.get("method")))
