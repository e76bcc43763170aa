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

import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from promptserve.models.bundle import Bundle, output_agreement
from promptserve.serving.engines.graph_rules import (
    TRT_PROVIDER,
    TensorRTOptions,
    provider_options,
    static_but_batch,
)


class TensorRTUnavailable(RuntimeError):
    """No TensorRT execution provider in this ONNX Runtime (or no GPU for it)."""


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
