"""The CLIP family's section of bundle.json and the files it names.

Common fields (graphs, signatures, parity, backbone id) live in models/bundle.py; what only a
CLIP backbone has lives here: widths, preprocessing, the BPE tokenizer and token-embedding
table (so prompts are embedded without torch), and the optional graphs' export settings.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from promptserve.models.bundle import Bundle
from promptserve.models.clip.backbone import BackboneSpec
from promptserve.models.clip.deep_prompts import DeepPromptSlots
from promptserve.models.clip.tokenizer import ClipTokenizer


class PreprocessConfig(BaseModel):
    """open_clip's eval transform: resize shortest side, center crop, normalise."""

    model_config = ConfigDict(frozen=True)

    size: int = Field(description="Square model input size in pixels.")
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: Literal["bicubic", "bilinear"] = "bicubic"
    resize_mode: Literal["shortest"] = "shortest"


class AnomalyGraphSpec(BaseModel):
    """What the `anomaly` graph was exported with: the input is `image_size` square (AnomalyCLIP
    resizes without keeping the aspect ratio), positional embedding interpolated to it."""

    model_config = ConfigDict(frozen=True)

    image_size: int
    taps: tuple[int, ...]
    dpam_layer: int
    grid: int = Field(0, description="Patches per side at image_size (set by export).")


class WinCLIPGraphSpec(BaseModel):
    """What the `winclip` graph was exported with (models/clip/dense_graphs.py::WinCLIPVisionGraph)."""

    model_config = ConfigDict(frozen=True)

    scales: tuple[int, ...] = (2, 3)
    geometric_windows: bool = False
    grid: int = Field(0, description="Patches per side (set by export).")


class SegmentGraphSpec(BaseModel):
    """A `segment_<method>` graph (models/clip/dense_graphs.py::SegmentVisionGraph): windows of
    `image_size` square, positional embedding interpolated to it as the method does."""

    model_config = ConfigDict(frozen=True)

    method: Literal["maskclip", "sclip", "clearclip"]
    image_size: int = 224
    grid: int = Field(0, description="Patches per side at image_size (set by export).")

    @property
    def graph(self) -> str:
        return f"segment_{self.method}"


class ClipBundleConfig(BaseModel):
    """bundle.json `config` of a CLIP bundle."""

    backbone: BackboneSpec
    embed_dim: int
    text_width: int
    context_length: int
    logit_scale: float = Field(description="exp(CLIP logit_scale): the classifier temperature.")
    preprocess: PreprocessConfig
    token_embedding_file: str = "token_embedding.safetensors"
    tokenizer_file: str = "bpe_simple_vocab_16e6.txt.gz"
    text_truncation: bool = Field(
        False, description="The text graph accepts sequences cut after their last EOT token."
    )
    deep_prompts: DeepPromptSlots | None = Field(
        None, description="Set when the bundle has the prompted graphs (MaPLe, IVLP)."
    )
    anomaly: AnomalyGraphSpec | None = Field(
        None, description="Set when the bundle has AnomalyCLIP's dense vision graph."
    )
    winclip: WinCLIPGraphSpec | None = Field(
        None, description="Set when the bundle has WinCLIP's window graph."
    )
    segment: dict[str, SegmentGraphSpec] = Field(
        default_factory=dict, description="Segmentation graphs by method (MaskCLIP, SCLIP, ...)."
    )

    def dense_graphs(self) -> list[str]:
        """The optional dense graphs this bundle has (anomaly maps, windows, segmentation)."""
        names = [n for n in ("anomaly", "winclip") if getattr(self, n) is not None]
        return names + [spec.graph for spec in self.segment.values()]


# bundle.json fields of schema 1 (before families) that moved into `config`
_V1_FIELDS = tuple(f for f in ClipBundleConfig.model_fields)


def migrate_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 bundle.json (flat CLIP fields) as schema 2 (common part + `config`)."""
    config = {k: data.pop(k) for k in _V1_FIELDS if k in data}
    return {**data, "schema_version": 2, "family": "clip", "config": config}


def clip_config(bundle: Bundle) -> ClipBundleConfig:
    """The CLIP section of `bundle`, or a BundleError naming the bundle's family."""
    return bundle.config(ClipBundleConfig)


@cache
def _tokenizer(path: str, context_length: int) -> ClipTokenizer:
    return ClipTokenizer(path, context_length)


def tokenizer(bundle: Bundle) -> ClipTokenizer:
    """The bundle's BPE tokenizer (one per vocabulary file and context length per process)."""
    cfg = clip_config(bundle)
    return _tokenizer(str(bundle.dir / cfg.tokenizer_file), cfg.context_length)


def token_embedding(bundle: Bundle) -> np.ndarray:
    """The text tower's token-embedding table [vocab, width]."""
    from safetensors.numpy import load_file

    return load_file(str(bundle.dir / clip_config(bundle).token_embedding_file))["weight"]
