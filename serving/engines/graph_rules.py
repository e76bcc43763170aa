"""How a graph may run, decided from its signature alone: which graphs get TensorRT (and its
batch profile and engine cache), and which graphs Triton cannot serve as they are.

The exporters write Triton configs by these rules (exporters/triton.py, exporters/tensorrt.py)
and the engines apply the same rules at run time, so they live here, on the serving side,
with no export-time dependency.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TRT_PROVIDER = "TensorrtExecutionProvider"


class TensorRTOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    precision: Literal["fp16", "fp32"] = "fp16"
    min_batch: int = Field(1, ge=1)
    opt_batch: int = Field(16, ge=1, description="The batch the kernels are tuned for.")
    max_batch: int = Field(64, ge=1)
    workspace_bytes: int = Field(4 << 30, ge=1 << 20)
    cache_path: str = Field(
        "/tmp/promptserve-trt-cache",
        description="Engine cache directory (on the Triton server for repository configs).",
    )

    @model_validator(mode="after")
    def _ordered(self) -> TensorRTOptions:
        if self.min_batch > self.max_batch:
            raise ValueError(f"min_batch {self.min_batch} exceeds max_batch {self.max_batch}")
        return self

    def batches(self) -> tuple[int, int, int]:
        lo, hi = self.min_batch, self.max_batch
        return lo, min(max(self.opt_batch, lo), hi), hi


def static_but_batch(shapes: dict[str, tuple[int | str, ...]]) -> bool:
    """Whether every input has the batch axis first and static dims after it."""
    return all(
        s and s[0] == "batch" and all(isinstance(d, int) for d in s[1:]) for s in shapes.values()
    )


def profile_shapes(shapes: dict[str, tuple[int | str, ...]], batch: int) -> str:
    """TensorRT EP's profile syntax, `name:BxDxD,...`, with the batch axis at `batch`."""
    return ",".join(
        f"{name}:{'x'.join(str(batch if i == 0 else d) for i, d in enumerate(dims))}"
        for name, dims in shapes.items()
    )


def cache_prefix(graph: Path) -> str:
    """Engine-cache file prefix naming the graph's content. ONNX Runtime keys cached engines by
    the model's file name and tensor names, not its weights: two bundles of one architecture
    (or a re-export) sharing a cache would load each other's engines without this."""
    digest = hashlib.sha256()
    with open(graph, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return f"{graph.stem}_{digest.hexdigest()[:16]}"


def provider_options(
    shapes: dict[str, tuple[int | str, ...]], options: TensorRTOptions, graph: Path
) -> dict[str, str]:
    """ONNX Runtime TensorRT EP options for one graph file (keys as in ORT's documentation;
    the Triton ONNX Runtime backend maps its accelerator parameters onto the same options)."""
    lo, opt, hi = options.batches()
    return {
        "trt_fp16_enable": "1" if options.precision == "fp16" else "0",
        "trt_max_workspace_size": str(options.workspace_bytes),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": options.cache_path,
        "trt_engine_cache_prefix": cache_prefix(Path(graph)),
        "trt_profile_min_shapes": profile_shapes(shapes, lo),
        "trt_profile_opt_shapes": profile_shapes(shapes, opt),
        "trt_profile_max_shapes": profile_shapes(shapes, hi),
    }


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str
    shape: tuple[int | str, ...]  # ONNX dims: ints, or names of dynamic axes


def unsupported(inputs: list[TensorSpec], outputs: list[TensorSpec]) -> str | None:
    """Why Triton cannot serve a graph as it is, or None. Triton has no scalar tensors in
    models without a batch axis; the prompted text graph takes a per-call scalar depth. It runs
    once per artifact, at registration, so the triton engine runs it in-process instead."""
    if _batched(inputs) and _batched(outputs):
        return None
    scalars = [s.name for s in inputs if not s.shape]
    if scalars:
        return f"scalar inputs {scalars} in a graph without a batch axis"
    return None


def _batched(specs: list[TensorSpec]) -> bool:
    return all(s.shape and s.shape[0] == "batch" for s in specs)
