"""The LLM family's prompt artifact: a PromptReps representation prompt.

A PromptReps "prompt" is four strings, a prefix and a suffix around the text for each side
(queries and passages are prompted differently), plus the few settings of the official encode
that change its output. They are data, so a user can register their own prompt and A/B it
against the official one by `prompt_id`, as CLIP prompts are; the official ones are built in
from byte-exact copies of ielab/PromptReps `prompts/` (models/llm/prompts/README.md says how
the official code turns them into token ids).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from promptserve.models.artifacts import ArtifactError, ArtifactManifest, PromptArtifact

__all__ = [
    "BUILTIN_SOURCES",
    "SIDES",
    "LlmArtifactManifest",
    "PromptRepsParams",
    "Side",
    "builtin_prompt",
    "builtin_prompts",
    "validate",
]

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
OFFICIAL_REPO = "ielab/PromptReps"
OFFICIAL_COMMIT = "e0636287aedd65abbf45dc9ead889054ad16965b"
#: built-in prompt name -> the official folder it copies (prompts/<folder>/)
BUILTIN_SOURCES: dict[str, str] = {
    "llama3": "meta-llama/Meta-Llama-3-8B-Instruct",
    "mistral": "mistralai/Mistral-7B-Instruct-v0.2",
    "phi3": "microsoft/Phi-3-mini-4k-instruct",
}
PROMPT_FIELDS = ("query_prefix", "query_suffix", "passage_prefix", "passage_suffix")
MAX_PROMPT_CHARS = 20_000
MAX_TEXT_TOKENS = 131_072

Side = Literal["query", "passage"]
SIDES: tuple[Side, Side] = ("query", "passage")


class PromptRepsParams(BaseModel):
    """The official encode's settings that change a representation (ielab/PromptReps
    `arguments.py::PromptRepsDataArguments` and tevatron's DataArguments).

    Left out on purpose: `--normalize` (every official run passes it; the exported graph always
    L2-normalises the dense vector), `--pad_to_multiple_of` (16, a bundle setting; padding does
    not change a right-padded causal LM's outputs), and the multi-token variants
    (`--num_pooled_tokens`, `--multi_reps`, `--word_level_reps`), which generate several tokens
    and so are not one forward pass; `extra="forbid"` refuses them instead of ignoring them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    query_max_len: int = Field(
        512, ge=1, le=MAX_TEXT_TOKENS, description="Query tokens read (the BEIR runs: 512)."
    )
    passage_max_len: int = Field(
        512, ge=1, le=MAX_TEXT_TOKENS, description="Passage tokens read (the BEIR runs: 512)."
    )
    top_k: int = Field(
        128,
        ge=1,
        le=MAX_TEXT_TOKENS,
        description="Sparse terms kept per text, of the text's own word ids (official: 128).",
    )
    num_expanded_tokens: int = Field(
        0,
        ge=0,
        le=MAX_TEXT_TOKENS,
        description="Extra sparse terms from outside the text (`--num_expended_tokens`; 0 = "
        "exact term matching only, the paper's setting).",
    )

    def max_len(self, side: Side) -> int:
        return self.query_max_len if side == "query" else self.passage_max_len


class LlmArtifactManifest(ArtifactManifest):
    """A PromptReps prompt: the four strings exactly as the official code feeds them to the
    tokenizer (each file's `read().strip()`; literal backslash-n sequences stay as they are),
    and its settings in `hparams` (`PromptRepsParams`)."""

    family: Literal["llm"] = "llm"
    task: Literal["retrieve"] = "retrieve"
    method: Literal["promptreps"] = "promptreps"
    query_prefix: str = Field(max_length=MAX_PROMPT_CHARS, description="Before each query.")
    query_suffix: str = Field(max_length=MAX_PROMPT_CHARS, description="After each query.")
    passage_prefix: str = Field(max_length=MAX_PROMPT_CHARS, description="Before each passage.")
    passage_suffix: str = Field(max_length=MAX_PROMPT_CHARS, description="After each passage.")

    @field_validator("hparams")
    @classmethod
    def _valid_params(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        # Validated but stored as given: filling in defaults would change the content id of
        # every stored artifact whenever a setting is added.
        PromptRepsParams.model_validate(hparams)
        return hparams

    @property
    def params(self) -> PromptRepsParams:
        return PromptRepsParams.model_validate(self.hparams)

    def prompt(self, side: Side) -> tuple[str, str]:
        """(prefix, suffix) of one side."""
        if side == "query":
            return self.query_prefix, self.query_suffix
        return self.passage_prefix, self.passage_suffix


def builtin_prompts() -> list[str]:
    """Names `builtin_prompt` accepts."""
    return sorted(BUILTIN_SOURCES)


def read_prompt_file(path: str | Path) -> str:
    """A prompt file as ielab/PromptReps `arguments.py::PromptRepsDataArguments.__post_init__`
    reads it: `open(path, 'r').read().strip()` (text mode, universal newlines)."""
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def builtin_prompt(model: str, backbone: str, **hparams: Any) -> PromptArtifact:
    """The official PromptReps prompt of a model family (`builtin_prompts()`) as an artifact
    for `backbone`; `hparams` override `PromptRepsParams` defaults."""
    if model not in BUILTIN_SOURCES:
        raise ArtifactError(
            f"no built-in PromptReps prompt {model!r}; choose one of {builtin_prompts()} or "
            "pass your own four prompt files"
        )
    folder = PROMPTS_DIR / model
    strings = {name: read_prompt_file(folder / f"{name}.txt") for name in PROMPT_FIELDS}
    try:
        manifest = LlmArtifactManifest(
            backbone=backbone,
            hparams=dict(hparams),
            source=f"{OFFICIAL_REPO}@{OFFICIAL_COMMIT[:7]} prompts/{BUILTIN_SOURCES[model]}",
            **strings,
        )
    except ValidationError as exc:
        raise ArtifactError(f"invalid PromptReps settings: {exc.errors()[0]['msg']}") from None
    return PromptArtifact(manifest)


def validate(artifact: PromptArtifact, bundle_config: Any) -> None:
    """Raise ArtifactError unless the artifact is a PromptReps prompt this bundle can run.

    `bundle_config` is the bundle's `LlmBundleConfig`; its `max_positions` bounds the text
    lengths (whether prefix + text + suffix fits is checked once the prompt is tokenized).
    """
    manifest = artifact.manifest
    if not isinstance(manifest, LlmArtifactManifest):
        raise ArtifactError(
            f"a {manifest.family!r} {manifest.method!r} artifact cannot run on an LLM bundle; "
            "register a PromptReps prompt (`promptserve import promptreps`)"
        )
    if artifact.tensors:
        raise ArtifactError(f"a PromptReps prompt has no tensors, got {sorted(artifact.tensors)}")
    try:
        params = PromptRepsParams.model_validate(manifest.hparams)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "hparams"
        raise ArtifactError(f"PromptReps hparams.{where}: {err['msg']}") from None
    limit = getattr(bundle_config, "max_positions", None)
    for side in SIDES:
        if limit is not None and params.max_len(side) > limit:
            raise ArtifactError(
                f"{side}_max_len={params.max_len(side)} is beyond the model's "
                f"{limit} positions; lower it"
            )
        prefix, suffix = manifest.prompt(side)
        if not prefix and not suffix:
            raise ArtifactError(
                f"the {side} prompt is empty: PromptReps reads the representation after the "
                "prompt's last token, so a prefix or a suffix is needed"
            )
