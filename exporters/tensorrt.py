"""TensorRT for the exported graphs, through ONNX Runtime's TensorRT execution provider: in a
Triton repository as the ONNX Runtime backend's `tensorrt` GPU accelerator (Triton builds the
engines at model load and keeps them in an engine cache), and locally, where the provider is
installed, to build that cache and check the engines against ONNX Runtime on CPU.

Only graphs whose every axis but the batch is static get TensorRT (the vision graph and the
dense graphs: the per-request work). Their optimisation profile spans the batch sizes Triton's
dynamic batcher forms (1 to `max_batch_size`, tuned for `opt_batch`). The text graphs (a
dynamic sequence length; run once per label set or artifact and cached) and the prompted
vision graph (a dynamic prompt length) stay on the CUDA provider.

Where TensorRT is absent the export says so and exits non-zero; `--tensorrt-on-server` writes
the accelerator into the configs without a local build, and says that nothing was checked.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from promptserve.models.bundle import Bundle, output_agreement

TRT_PROVIDER = "TensorrtExecutionProvider"


class TensorRTUnavailable(RuntimeError):
    """No TensorRT execution provider in this ONNX Runtime (or no GPU for it)."""


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


def triton_accelerator(
    shapes: dict[str, tuple[int | str, ...]], options: TensorRTOptions, graph: Path
) -> str:
    """The `optimization` block of a config.pbtxt that runs the graph through TensorRT in
    Triton's ONNX Runtime backend (its parameter names: precision_mode,
    max_workspace_size_bytes, trt_*)."""
    ort = provider_options(shapes, options, graph)
    params = {
        "precision_mode": options.precision.upper(),
        "max_workspace_size_bytes": ort["trt_max_workspace_size"],
        **{k: v for k, v in ort.items() if k.startswith(("trt_engine", "trt_profile"))},
    }
    lines = [
        "optimization { execution_accelerators {",
        '  gpu_execution_accelerator : [ { name : "tensorrt"',
        *(f'    parameters {{ key: "{k}" value: "{v}" }}' for k, v in params.items()),
        "  } ]",
        "} }",
    ]
    return "\n".join(lines)


class EngineParity(BaseModel):
    """One graph's TensorRT engine against ONNX Runtime on CPU, at each profile batch size."""

    graph: str
    precision: str
    batches: list[int]
    max_abs_diff: float
    min_cosine: float
    build_s: float
    passed: bool


def tensorrt_provider() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return TRT_PROVIDER in ort.get_available_providers()


def build_engines(
    bundle: Bundle, options: TensorRTOptions, min_cosine: float | None = None
) -> list[EngineParity]:
    """Build (into `options.cache_path`) and check the TensorRT engine of every graph that gets
    one: random inputs at the profile's min/opt/max batch through TensorRT and through ONNX
    Runtime on CPU. Passing needs cosine >= 0.999 (fp32) / 0.99 (fp16) on every output row."""
    if not tensorrt_provider():
        raise TensorRTUnavailable(
            "ONNX Runtime has no TensorrtExecutionProvider here (onnxruntime-gpu with TensorRT "
            "libraries on a CUDA machine is needed)"
        )
    import onnxruntime as ort

    threshold = min_cosine or (0.99 if options.precision == "fp16" else 0.999)
    Path(options.cache_path).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    report = []
    for graph in bundle.manifest.graphs:
        path = str(bundle.graph_path(graph))
        cpu = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        shapes = {i.name: tuple(i.shape) for i in cpu.get_inputs()}
        if not static_but_batch(shapes):
            continue
        start = time.perf_counter()
        trt = ort.InferenceSession(
            path,
            providers=[
                (TRT_PROVIDER, provider_options(shapes, options, Path(path))),
                "CUDAExecutionProvider",
            ],
        )
        if trt.get_providers()[0] != TRT_PROVIDER:  # ORT falls back silently
            raise TensorRTUnavailable(
                f"{graph}: ONNX Runtime lists TensorRT but the session runs on "
                f"{trt.get_providers()} (TensorRT libraries missing or no GPU)"
            )
        diffs, cosines = [], []
        for batch in sorted(set(options.batches())):
            feeds = {
                i.name: rng.standard_normal((batch, *i.shape[1:])).astype(np.float32)
                for i in cpu.get_inputs()
            }
            diff, cos = output_agreement(trt.run(None, feeds), cpu.run(None, feeds))
            diffs.append(diff)
            cosines.append(cos)
        report.append(
            EngineParity(
                graph=graph,
                precision=options.precision,
                batches=sorted(set(options.batches())),
                max_abs_diff=max(diffs),
                min_cosine=min(cosines),
                build_s=time.perf_counter() - start,
                passed=min(cosines) >= threshold,
            )
        )
    return report
