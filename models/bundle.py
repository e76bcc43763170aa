"""The bundle: what export writes for one backbone and what every engine reads.

Layout of a bundle directory:
    bundle.json              BundleManifest (below)
    vision.onnx, text.onnx   graphs (see models/clip/graphs.py for their inputs and outputs)
    vision_prompted.onnx, text_prompted.onnx   the same towers taking deep prompts (optional)
    token_embedding.safetensors   the text tower's token-embedding table, so the server can
                             build prompt embeddings without torch
    bpe_simple_vocab_16e6.txt.gz  the CLIP BPE vocabulary
Reading a bundle needs numpy and safetensors only.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from promptserve.models.clip.backbone import BackboneSpec
from promptserve.models.clip.deep_prompts import DeepPromptSlots
from promptserve.models.clip.tokenizer import ClipTokenizer

BUNDLE_FILE = "bundle.json"


class BundleError(ValueError):
    """A bundle directory that is missing or incomplete."""


class PreprocessConfig(BaseModel):
    """open_clip's eval transform: resize shortest side, center crop, normalise."""

    model_config = ConfigDict(frozen=True)

    size: int = Field(description="Square model input size in pixels.")
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: Literal["bicubic", "bilinear"] = "bicubic"
    resize_mode: Literal["shortest"] = "shortest"


class TensorInfo(BaseModel):
    """One graph input or output as ONNX Runtime reports it (the fields of its NodeArg)."""

    name: str
    type: str = Field(description="ONNX Runtime's type string, e.g. tensor(float).")
    shape: list[int | str | None] = Field(description="Dims: sizes, or names of dynamic axes.")


class GraphInfo(BaseModel):
    file: str
    inputs: list[str]
    outputs: list[str]
    input_specs: list[TensorInfo] | None = Field(
        None, description="Written at export, so servers need not open the graph to learn it."
    )
    output_specs: list[TensorInfo] | None = None


class ParityResult(BaseModel):
    """ONNX Runtime vs torch on seeded inputs."""

    max_abs_diff: float
    min_cosine: float
    tolerance: float
    batch: int
    passed: bool


def output_agreement(got: list[np.ndarray], want: list[np.ndarray]) -> tuple[float, float]:
    """(max |got - want|, min cosine between matching rows) over paired outputs, each flattened
    per batch row and compared in float64: the parity measure of every export check."""
    diff, cos = 0.0, 1.0
    for g, w in zip(got, want, strict=True):
        g = np.asarray(g, np.float64).reshape(len(g), -1)
        w = np.asarray(w, np.float64).reshape(len(w), -1)
        diff = max(diff, float(np.abs(g - w).max()))
        rows = (g * w).sum(-1) / (np.linalg.norm(g, axis=-1) * np.linalg.norm(w, axis=-1))
        cos = min(cos, float(rows.min()))
    return diff, cos


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


class BundleManifest(BaseModel):
    schema_version: Literal[1] = 1
    backbone: BackboneSpec
    backbone_id: str
    embed_dim: int
    text_width: int
    context_length: int
    logit_scale: float = Field(description="exp(CLIP logit_scale): the classifier temperature.")
    preprocess: PreprocessConfig
    graphs: dict[str, GraphInfo]
    token_embedding_file: str = "token_embedding.safetensors"
    tokenizer_file: str = "bpe_simple_vocab_16e6.txt.gz"
    parity: dict[str, ParityResult] = Field(default_factory=dict)
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
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    def dense_graphs(self) -> list[str]:
        """The optional dense graphs this bundle has (anomaly maps, windows, segmentation)."""
        names = [n for n in ("anomaly", "winclip") if getattr(self, n) is not None]
        return names + [spec.graph for spec in self.segment.values()]


class Bundle:
    """A bundle directory opened for reading."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        path = self.dir / BUNDLE_FILE
        if not path.exists():
            raise BundleError(
                f"{self.dir} is not a bundle (no {BUNDLE_FILE}); run `promptserve export`"
            )
        self.manifest = BundleManifest.model_validate_json(path.read_text())

    @property
    def backbone_id(self) -> str:
        return self.manifest.backbone_id

    def signature(self, name: str) -> tuple[list[TensorInfo], list[TensorInfo]]:
        """A graph's inputs and outputs: from bundle.json, or read from the graph file for
        bundles exported before the specs were written there."""
        info = self.manifest.graphs[name]
        if info.input_specs is not None and info.output_specs is not None:
            return info.input_specs, info.output_specs
        return read_signature(self.graph_path(name))

    def graph_path(self, name: str) -> Path:
        try:
            return self.dir / self.manifest.graphs[name].file
        except KeyError:
            raise BundleError(
                f"bundle has no {name!r} graph; it has {sorted(self.manifest.graphs)}"
            ) from None

    def has_graph(self, name: str) -> bool:
        return name in self.manifest.graphs

    @cached_property
    def tokenizer(self) -> ClipTokenizer:
        return ClipTokenizer(self.dir / self.manifest.tokenizer_file, self.manifest.context_length)

    @cached_property
    def token_embedding(self) -> np.ndarray:
        from safetensors.numpy import load_file

        return load_file(str(self.dir / self.manifest.token_embedding_file))["weight"]


def read_signature(path: Path) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """A graph file's inputs and outputs, read by an unoptimised CPU ONNX Runtime session (it
    loads the weights: bundle.json keeps the result, see `Bundle.signature`)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def specs(args) -> list[TensorInfo]:
        return [TensorInfo(name=a.name, type=a.type, shape=list(a.shape)) for a in args]

    return specs(session.get_inputs()), specs(session.get_outputs())
