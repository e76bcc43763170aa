"""The bundle: what export writes for one backbone and what every runtime reads.

A bundle directory holds `bundle.json` (`BundleManifest`) and the files it names: the ONNX
graphs, each with its input/output signature and parity report, and whatever else its family
needs (tokenizer, embedding tables). The manifest is a common part, written and read here,
plus the family's section (`config`), validated by the family's own model
(models/family.py), so this module knows no family. Reading a bundle needs numpy and pydantic.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, Field, model_validator

from promptserve.models.family import Family, get_family

BUNDLE_FILE = "bundle.json"
C = TypeVar("C", bound=BaseModel)


class BundleError(ValueError):
    """A bundle directory that is missing, incomplete, or not of the expected family."""


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
        g64 = np.asarray(g, np.float64).reshape(len(g), -1)
        w64 = np.asarray(w, np.float64).reshape(len(w), -1)
        diff = max(diff, float(np.abs(g64 - w64).max()))
        norms = np.linalg.norm(g64, axis=-1) * np.linalg.norm(w64, axis=-1)
        cos = min(cos, float(((g64 * w64).sum(-1) / norms).min()))
    return diff, cos


class BundleManifest(BaseModel):
    """bundle.json: the common part, and the family's section in `config`."""

    schema_version: Literal[2] = 2
    family: str = Field(description="The model family that reads `config` (models/family.py).")
    backbone_id: str = Field(description="Identity artifacts are matched against.")
    graphs: dict[str, GraphInfo]
    parity: dict[str, ParityResult] = Field(default_factory=dict)
    config: Any = Field(description="The family's section, validated by its bundle_config.")
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    @model_validator(mode="before")
    @classmethod
    def _family_section(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "family" not in data:  # schema 1, before families: a flat CLIP manifest
            data = get_family("clip").migrate_bundle(dict(data))
        family = get_family(str(data.get("family", "")))
        config = data.get("config")
        if not isinstance(config, family.bundle_config):
            data = {**data, "config": family.bundle_config.model_validate(config)}
        return data

    @property
    def family_obj(self) -> Family:
        return get_family(self.family)


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

    @property
    def family(self) -> Family:
        return get_family(self.manifest.family)

    def config(self, model: type[C]) -> C:
        """The family section, typed: a BundleError if this bundle is of another family."""
        config = self.manifest.config
        if not isinstance(config, model):
            raise BundleError(
                f"{self.dir} is a {self.manifest.family!r} bundle; this needs "
                f"{model.__name__} (export a bundle of that family)"
            )
        return config

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


def read_signature(path: Path) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """A graph file's inputs and outputs, read by an unoptimised CPU ONNX Runtime session (it
    loads the weights: bundle.json keeps the result, see `Bundle.signature`)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def specs(args: Any) -> list[TensorInfo]:
        return [TensorInfo(name=a.name, type=a.type, shape=list(a.shape)) for a in args]

    return specs(session.get_inputs()), specs(session.get_outputs())
