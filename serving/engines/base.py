"""The runtime interface: `run(graph, feeds)` over a bundle's named graphs, for any family.

What the graphs mean (CLIP's encode_image/encode_text, an LLM's forward) is the family's
business (e.g. models/clip/runtime.py); a runtime only runs named graphs on named inputs.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from promptserve.models.bundle import Bundle
from promptserve.serving.engines.graph_rules import TensorRTOptions


class TritonClientOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field("127.0.0.1:8001", description="gRPC host:port, or HTTP host:port.")
    protocol: Literal["grpc", "http"] = "grpc"
    model_prefix: str = Field("promptserve", description="As exported: <prefix>_<graph>.")
    timeout_s: float = Field(30.0, gt=0, description="Per inference call.")
    retries: int = Field(2, ge=0, description="Retries of a failed call (connection errors).")
    check_models_at_start: bool = Field(True, description="Fail replica start if not ready.")
    connections: int | None = Field(
        None,
        ge=1,
        description="TCP connections to the server: gRPC channels used round-robin (each "
        "multiplexes concurrent calls; default 1), or the HTTP pool's limit (default 16).",
    )
    shared_memory: Literal["none", "system", "cuda"] = Field(
        "none",
        description="Tensors through shared memory instead of the socket, for a co-located "
        "server: system (POSIX /dev/shm, shared with the server) or cuda (CUDA IPC, on "
        "`cuda_device`; needs cuda-python).",
    )
    cuda_device: int = Field(0, ge=0, description="GPU of the cuda shared-memory regions.")


class EngineOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    threads: int | None = Field(None, description="Intra-op threads; None = the runtime's default.")
    providers: list[str] | None = Field(
        None,
        description="ONNX Runtime execution providers in priority order; None = best available.",
    )
    allow_spinning: bool = Field(
        False,
        description="Let ONNX Runtime threads spin between ops (faster alone, worse when sharing CPUs).",
    )
    text_chunk_size: int = Field(256, ge=1, description="Sequences per text-graph call.")
    triton: TritonClientOptions | None = Field(
        None, description="For the triton engine: where the server is and how to call it."
    )
    tensorrt: TensorRTOptions | None = Field(
        None,
        description="With ONNX Runtime's TensorRT provider: precision, batch profile and engine "
        "cache of the static-shape graphs (exporters/tensorrt.py); None = their defaults.",
    )


class Engine(ABC):
    """Runs a bundle's graphs. Inputs and outputs are numpy float32."""

    name: ClassVar[str]

    def __init__(self, bundle: Bundle, options: EngineOptions | None = None) -> None:
        self.bundle = bundle
        self.options = options or EngineOptions()

    @abstractmethod
    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run one of the bundle's graphs (`bundle.json: graphs`) on its named inputs; the
        outputs in the graph's order. A family's verbs (e.g. models/clip/runtime.py) call it."""

    def close(self) -> None:  # noqa: B027 -- optional: in-process runtimes hold nothing
        """Release what the runtime holds outside this process (connections, registered
        shared memory); in-process runtimes hold nothing."""

    def signature(self, graph: str) -> Any:
        """The graph's (inputs, outputs) as recorded in bundle.json."""
        return self.bundle.signature(graph)


# Imported lazily so a server without torch never imports it.
ENGINES: dict[str, str] = {
    "onnxruntime": "promptserve.serving.engines.onnx:OnnxRuntimeEngine",
    "torch": "promptserve.serving.engines.torch:TorchEngine",
    "triton": "promptserve.serving.engines.triton:TritonEngine",
}


def create_engine(
    name: str, bundle: Bundle, options: EngineOptions | None = None, **kwargs: Any
) -> Engine:
    """A runtime by name over `bundle`'s graphs (`kwargs` go to its constructor)."""
    try:
        module, cls = ENGINES[name].split(":")
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; available: {sorted(ENGINES)}") from None
    engine: Engine = getattr(importlib.import_module(module), cls)(bundle, options, **kwargs)
    return engine
