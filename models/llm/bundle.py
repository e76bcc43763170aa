"""The LLM family's section of bundle.json.

Common fields (graphs, signatures, parity, backbone id) live in models/bundle.py; what only a
causal-LM bundle has lives here: the widths of its two outputs, the longest sequence its
position table covers, and the token ids a server pads and frames texts with, read from the
backbone's own tokenizer at export so serving needs neither transformers nor the backbone.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from promptserve.models.bundle import Bundle
from promptserve.models.llm.backbone import LlmBackboneSpec

__all__ = ["LlmBundleConfig", "llm_config"]


class LlmBundleConfig(BaseModel):
    """bundle.json `config` of an LLM bundle."""

    model_config = ConfigDict(frozen=True)

    backbone: str = Field(
        description="The backbone spec exported: hf-hub:ORG/NAME[@REV] or local-dir:PATH."
    )
    architecture: str = Field(description="The transformers class, e.g. LlamaForCausalLM.")
    hidden_size: int = Field(gt=0, description="Width of the dense output (last hidden state).")
    vocab_size: int = Field(
        gt=0,
        description="Width of the sparse output (the LM head's rows; may exceed the "
        "tokenizer's vocabulary where the embedding table is padded).",
    )
    max_positions: int = Field(gt=0, description="Longest sequence, prompt included.")
    num_layers: int | None = Field(
        None, gt=0, description="Decoder layers (IDP pools name one); absent in older bundles."
    )
    num_heads: int | None = Field(None, gt=0, description="Attention heads per layer.")
    tokenizer_file: str = Field("tokenizer.json", description="The fast tokenizer, in the bundle.")
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int = Field(
        description="Right-padding id: the tokenizer's pad token, or its EOS where it has none "
        "(as PromptReps does); padded positions are masked, so its value changes no output."
    )
    pad_to_multiple_of: int = Field(
        16, gt=0, description="Sequences are padded to a multiple of this (PromptReps' default)."
    )
    dtype: Literal["float32"] = "float32"

    @field_validator("backbone")
    @classmethod
    def _parses(cls, value: str) -> str:
        LlmBackboneSpec.parse(value)  # a BackboneError (a ValueError) names the fault
        return value

    @property
    def backbone_spec(self) -> LlmBackboneSpec:
        return LlmBackboneSpec.parse(self.backbone)


def llm_config(bundle: Bundle) -> LlmBundleConfig:
    """The LLM section of `bundle`, or a BundleError naming the bundle's family."""
    return bundle.config(LlmBundleConfig)
