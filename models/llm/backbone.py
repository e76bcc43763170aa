"""LLM backbone specs: which Hugging Face causal LM, from the Hub or from a local folder.

PromptReps prompts a *frozen* causal LM as published (ielab/PromptReps
`modeling.py::PromptRepsLLM.load`: `AutoModelForCausalLM.from_pretrained(name)`), so a backbone
is just where `from_pretrained` reads: a Hub name (optionally pinned to a revision) or a model
folder on disk. Parsing needs no torch; loading does.

Artifacts and indexes are matched to a backbone by `id`. A Hub name with a revision pins the
weights; a local folder has no name that does, so its id carries a digest of the weight files'
bytes: re-exporting after the weights changed gives another id, and stale indexes are refused.
"""

from __future__ import annotations

import hashlib
import re
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

HF_HUB, LOCAL_DIR = "hf-hub:", "local-dir:"
# The files `from_pretrained` reads weights from (single file or shards).
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
DIGEST_CHARS = 16
# A Hub repository id: NAME or ORG/NAME (the Hub's own character set).
_HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


class BackboneError(ValueError):
    """An LLM backbone spec that cannot be parsed, found or loaded."""


class LlmBackboneSpec(BaseModel):
    """Where a frozen causal LM comes from.

    Example:
        >>> LlmBackboneSpec.parse("hf-hub:meta-llama/Meta-Llama-3-8B-Instruct")
        >>> LlmBackboneSpec.parse("hf-hub:Qwen/Qwen2.5-0.5B-Instruct@7ae557604adf67be50417f59c2c2f167def9a775")
        >>> LlmBackboneSpec.parse("local-dir:/models/llama-3-8b-instruct")
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Literal["hf-hub", "local-dir"]
    name: str = Field(description="Hub repository id (ORG/NAME), or the local folder's path.")
    revision: str | None = Field(None, description="Hub branch, tag or commit (hf-hub only).")

    @classmethod
    def parse(cls, spec: str) -> LlmBackboneSpec:
        """`hf-hub:ORG/NAME[@REVISION]` or `local-dir:PATH` (a Hugging Face model folder)."""
        spec = spec.strip()
        if spec.startswith(HF_HUB):
            name, _, revision = spec[len(HF_HUB) :].partition("@")
            if not _HUB_NAME.match(name):
                raise BackboneError(
                    f"{spec!r}: expected hf-hub:ORG/NAME[@REVISION], e.g. "
                    "hf-hub:meta-llama/Meta-Llama-3-8B-Instruct"
                )
            if "@" in spec[len(HF_HUB) :] and not revision:
                raise BackboneError(f"{spec!r}: empty revision after '@'")
            return cls(source="hf-hub", name=name, revision=revision or None)
        if spec.startswith(LOCAL_DIR):
            path = spec[len(LOCAL_DIR) :]
            if not path:
                raise BackboneError(f"{spec!r}: expected local-dir:PATH to a model folder")
            # absolute, so the bundle.json that records it works from any directory
            return cls(source="local-dir", name=str(Path(path).expanduser().absolute()))
        raise BackboneError(
            f"unknown LLM backbone {spec!r}: use hf-hub:ORG/NAME[@REVISION] (the Hugging Face "
            "Hub) or local-dir:PATH (a folder written by save_pretrained)"
        )

    @property
    def spec(self) -> str:
        """The string `parse` reads back (what bundle.json records)."""
        if self.source == "hf-hub":
            return f"{HF_HUB}{self.name}" + (f"@{self.revision}" if self.revision else "")
        return f"{LOCAL_DIR}{self.name}"

    def __str__(self) -> str:
        return self.spec

    @cached_property
    def id(self) -> str:
        """The identity artifacts and indexes are matched against: the Hub name (with its
        revision), or `<folder name>@<sha256 of the weight files>[:16]` for a local folder."""
        if self.source == "hf-hub":
            return self.name + (f"@{self.revision}" if self.revision else "")
        return f"{self.path.name}@{weights_digest(self.path)[:DIGEST_CHARS]}"

    @property
    def path(self) -> Path:
        """The local folder (local-dir only), checked to hold a model."""
        if self.source != "local-dir":
            raise BackboneError(f"{self.spec} is on the Hub, not a local folder")
        folder = Path(self.name)
        if not folder.is_dir():
            raise BackboneError(f"{self.spec}: no such folder")
        if not (folder / "config.json").is_file():
            raise BackboneError(
                f"{self.spec}: not a Hugging Face model folder (no config.json); write one with "
                "model.save_pretrained(PATH) and tokenizer.save_pretrained(PATH)"
            )
        return folder

    def _where(self) -> tuple[str, dict[str, Any]]:
        if self.source == "hf-hub":
            return self.name, {"revision": self.revision}
        return str(self.path), {"local_files_only": True}

    def load(self) -> PreTrainedModel:
        """The causal LM in float32, eval mode (needs torch and transformers)."""
        import torch
        from transformers import AutoModelForCausalLM

        where, kwargs = self._where()
        try:
            model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32, **kwargs)
        except (OSError, ValueError) as e:
            raise BackboneError(f"cannot load {self.spec} as a causal LM: {e}") from e
        return model.eval()

    def load_tokenizer(self) -> PreTrainedTokenizerFast:
        """The backbone's fast tokenizer: serving runs its tokenizer.json with the
        `tokenizers` library, so a slow (Python) tokenizer is refused."""
        from transformers import AutoTokenizer

        where, kwargs = self._where()
        try:
            tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
        except (OSError, ValueError) as e:
            raise BackboneError(f"cannot load the tokenizer of {self.spec}: {e}") from e
        if not tokenizer.is_fast:
            raise BackboneError(
                f"{self.spec} has only a slow tokenizer ({type(tokenizer).__name__}); serving "
                "needs a fast one (tokenizer.json): convert it with "
                "AutoTokenizer.from_pretrained(..., use_fast=True).save_pretrained(PATH)"
            )
        return tokenizer  # type: ignore[return-value]


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a model folder, in name order (shards included)."""
    files = sorted({p for pattern in WEIGHT_PATTERNS for p in folder.glob(pattern)})
    return [p for p in files if p.is_file()]


def weights_digest(folder: Path) -> str:
    """sha256 over the bytes of the folder's weight files, in name order."""
    files = weight_files(folder)
    if not files:
        raise BackboneError(
            f"{folder} holds no weights ({' or '.join(WEIGHT_PATTERNS)}); write them with "
            "model.save_pretrained(PATH)"
        )
    digest = hashlib.sha256()
    for path in files:
        with path.open("rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()
