"""A Triton model repository from a bundle: one `onnxruntime_onnx` model per graph, its
`config.pbtxt` derived from the ONNX graph's own signature, so Triton runs the frozen encoders
(with its dynamic batcher) while promptserve keeps routing, prompts, heads and the API.

Graphs whose every input has the batch axis first get `max_batch_size` and Triton's dynamic
batching; a batched input of rank 1 (e.g. `eot_index` [batch]) is declared `dims: [1]` with
`reshape: { shape: [] }`, Triton's form for scalars (per row, or per call when unbatched). Graphs with an unbatched input get
`max_batch_size: 0` and full shapes, and are not batched by Triton; the prompted text graph (a
per-call scalar depth, which Triton cannot declare without a batch axis) is left out, and the
triton engine runs it in-process: it runs once per artifact, at registration.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from promptserve.exporters.tensorrt import triton_accelerator
from promptserve.models.bundle import Bundle
from promptserve.serving.engines.graph_rules import (
    TensorRTOptions,
    TensorSpec,
    _batched,
    static_but_batch,
    unsupported,
)

CONFIG_FILE = "config.pbtxt"
# ONNX TensorProto element types -> Triton data types
_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16", 11: "TYPE_FP64", 6: "TYPE_INT32", 7: "TYPE_INT64",
          9: "TYPE_BOOL", 2: "TYPE_UINT8"}  # fmt: skip


class TritonError(ValueError):
    """A model repository that does not match its graphs, or a request Triton cannot serve."""


class TritonOptions(BaseModel):
    """How the repository's models are configured (what Triton does, not what they compute)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str = Field("promptserve", description="Model names are <prefix>_<graph>.")
    instance_kind: Literal["KIND_GPU", "KIND_CPU"] = "KIND_GPU"
    instances: int = Field(1, ge=1, description="Model instances per device.")
    max_batch_size: int = Field(64, ge=1)
    preferred_batch_sizes: tuple[int, ...] = (8, 16, 32)
    max_queue_delay_us: int = Field(2000, ge=0, description="Dynamic batcher's wait.")
    backend: Literal["onnxruntime", "python"] = Field(
        "onnxruntime",
        description="onnxruntime: Triton's ONNX Runtime backend runs model.onnx; python: a "
        "Python-backend model.py runs it with ONNX Runtime (Triton builds without the ONNX "
        "Runtime backend, e.g. the one nvidia-pytriton bundles).",
    )
    tensorrt: TensorRTOptions | None = Field(
        None,
        description="Run the static-shape graphs through TensorRT in Triton's ONNX Runtime "
        "backend (exporters/tensorrt.py).",
    )

    @model_validator(mode="after")
    def _tensorrt_needs_the_ort_backend(self) -> TritonOptions:
        if self.tensorrt is not None and self.backend != "onnxruntime":
            raise ValueError(
                "tensorrt runs in Triton's ONNX Runtime backend: use backend onnxruntime"
            )
        if self.tensorrt is not None and self.instance_kind != "KIND_GPU":
            raise ValueError(
                "tensorrt needs instance_kind KIND_GPU (Triton applies GPU accelerators only there)"
            )
        if self.tensorrt is not None and self.tensorrt.min_batch > 1:
            raise ValueError(
                "the TensorRT profile must start at batch 1: Triton sends batches of 1"
            )
        if self.tensorrt is not None and self.tensorrt.max_batch < self.max_batch_size:
            raise ValueError(
                f"the TensorRT profile's max_batch {self.tensorrt.max_batch} is below "
                f"max_batch_size {self.max_batch_size}: Triton would form batches it rejects"
            )
        return self


def graph_signature(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of an ONNX file, read without loading its weights."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def specs(values) -> list[TensorSpec]:
        out = []
        for v in values:
            t = v.type.tensor_type
            if t.elem_type not in _TYPES:
                raise TritonError(f"{path.name}: {v.name} has ONNX type {t.elem_type}, unmapped")
            # a dim with neither name nor value is dynamic too
            dims = tuple(d.dim_param or d.dim_value or "?" for d in t.shape.dim)
            out.append(TensorSpec(v.name, _TYPES[t.elem_type], dims))
        return out

    return specs(model.graph.input), specs(model.graph.output)


def _tensor(spec: TensorSpec, batched: bool) -> str:
    dims = spec.shape[1:] if batched else spec.shape
    values = [d if isinstance(d, int) else -1 for d in dims]
    text = f'name: "{spec.name}" data_type: {spec.data_type} '
    if not values:  # a scalar (per row when batched): Triton's form is dims [1] + reshape
        return "{ " + text + "dims: [ 1 ] reshape: { shape: [ ] } }"
    return "{ " + text + f"dims: [ {', '.join(map(str, values))} ] }}"


def model_config(name: str, inputs: list[TensorSpec], outputs: list[TensorSpec],
                 options: TritonOptions, graph: Path) -> str:  # fmt: skip
    """config.pbtxt text for one graph (`graph`: its ONNX file)."""
    batched = _batched(inputs) and _batched(outputs)
    lines = [
        f'name: "{name}"',
        'platform: "onnxruntime_onnx"' if options.backend == "onnxruntime" else 'backend: "python"',
        f"max_batch_size: {options.max_batch_size if batched else 0}",
        "input [",
        ",\n".join("  " + _tensor(s, batched) for s in inputs),
        "]",
        "output [",
        ",\n".join("  " + _tensor(s, batched) for s in outputs),
        "]",
    ]
    if batched:
        preferred = [b for b in options.preferred_batch_sizes if b <= options.max_batch_size]
        lines += [
            "dynamic_batching {",
            f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]",
            f"  max_queue_delay_microseconds: {options.max_queue_delay_us}",
            "}",
        ]
    lines.append(
        f"instance_group [ {{ kind: {options.instance_kind} count: {options.instances} }} ]"
    )
    shapes = {s.name: s.shape for s in inputs}
    if options.tensorrt is not None and batched and static_but_batch(shapes):
        lines.append(triton_accelerator(shapes, options.tensorrt, graph))
    return "\n".join(lines) + "\n"


def parse_config(text: str):
    """The config as Triton's own `ModelConfig` protobuf (shipped by tritonclient)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(text, model_config_pb2.ModelConfig())


def check_config(config, graph: Path) -> None:
    """Raise TritonError unless the parsed config declares exactly the graph's inputs and
    outputs, with their types and shapes (batch axis and dynamic axes as -1)."""
    from tritonclient.grpc import model_config_pb2

    inputs, outputs = graph_signature(graph)
    batched = config.max_batch_size > 0
    for kind, declared, specs in (
        ("input", config.input, inputs),
        ("output", config.output, outputs),
    ):
        if [d.name for d in declared] != [s.name for s in specs]:
            raise TritonError(
                f"{config.name}: {kind}s {[d.name for d in declared]} but {graph.name} has "
                f"{[s.name for s in specs]}"
            )
        for d, s in zip(declared, specs, strict=True):
            dtype = model_config_pb2.DataType.Name(d.data_type)
            if dtype != s.data_type:
                raise TritonError(f"{config.name}: {d.name} is {dtype}, the graph's {s.data_type}")
            want = list(s.shape[1:] if batched else s.shape)
            have = list(d.reshape.shape) if d.HasField("reshape") else list(d.dims)
            if len(have) != len(want) or any(
                isinstance(w, int) and h != w for h, w in zip(have, want, strict=True)
            ):
                raise TritonError(f"{config.name}: {d.name} dims {have}, the graph's {want}")


def write_model_repository(
    bundle: Bundle, out: str | Path, options: TritonOptions | None = None
) -> dict[str, str | None]:
    """`out/<prefix>_<graph>/{config.pbtxt, 1/model.onnx}` for every graph of the bundle Triton
    can serve, each config parsed as a `ModelConfig` and checked against its graph. Returns
    {model name: None, or why the graph was left out (`unsupported`)}."""
    options = options or TritonOptions()
    out = Path(out)
    names: dict[str, str | None] = {}
    for graph in bundle.manifest.graphs:
        source = bundle.graph_path(graph)
        name = f"{options.prefix}_{graph}"
        inputs, outputs = graph_signature(source)
        names[name] = unsupported(inputs, outputs)
        if names[name] is not None:
            continue
        text = model_config(name, inputs, outputs, options, source)
        check_config(parse_config(text), source)
        (out / name / "1").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, out / name / "1" / "model.onnx")
        if options.backend == "python":
            (out / name / "1" / "model.py").write_text(PYTHON_MODEL)
        (out / name / CONFIG_FILE).write_text(text)
    return names


PYTHON_MODEL = '''"""Triton Python-backend model written by `promptserve export --format triton --backend
python`: runs this version's model.onnx with ONNX Runtime. The stub's interpreter finds numpy and
onnxruntime on its own path, or on PROMPTSERVE_TRITON_PYTHONPATH (colon-separated)."""

import os
import sys

sys.path[:0] = [p for p in os.environ.get("PROMPTSERVE_TRITON_PYTHONPATH", "").split(":") if p]

from pathlib import Path  # noqa: E402

import onnxruntime as ort  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        providers = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), providers=providers)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def execute(self, requests):
        responses = []
        for request in requests:
            feeds = {n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.inputs}
            values = self.session.run(self.outputs, feeds)
            tensors = [pb_utils.Tensor(n, v) for n, v in zip(self.outputs, values)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
'''
