"""The engine interface: a runtime implements `run(graph, feeds)` over the bundle's named graphs;
the encode methods every method and route use (images, text, deep prompts, dense outputs) are
built on it here, once for all runtimes."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from functools import cached_property
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from promptserve.exporters.tensorrt import TensorRTOptions
from promptserve.models.bundle import Bundle, BundleError
from promptserve.models.clip.deep_prompts import DeepPrompts, DeepPromptSlots, VisualPromptBatch
from promptserve.models.clip.text import TextTower


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
        outputs in the graph's order. The encode methods below are built on it."""

    def close(self) -> None:  # noqa: B027 -- optional: in-process runtimes hold nothing
        """Release what the runtime holds outside this process (connections, registered
        shared memory); in-process runtimes hold nothing."""

    def encode_image(
        self, pixel_values: np.ndarray, prompts: VisualPromptBatch | None = None
    ) -> np.ndarray:
        """[B, 3, H, W] normalised pixels -> [B, E] image embeddings (unnormalised); with
        `prompts`, through the prompted vision graph (plain rows masked, see graphs.py)."""
        if prompts is None:
            return self.run("vision", {"pixel_values": pixel_values})[0]
        self.deep_slots  # noqa: B018 -- a clear error for bundles without prompted graphs
        return self.run("vision_prompted", {"pixel_values": pixel_values, **prompts.inputs()})[0]

    def encode_text(
        self,
        token_embeddings: np.ndarray,
        eot_index: np.ndarray,
        deep: DeepPrompts | None = None,
    ) -> np.ndarray:
        """[N, L, D] token embeddings, [N] EOT positions -> [N, E] text embeddings; with
        `deep`, through the prompted text graph."""
        feeds = {"token_embeddings": token_embeddings, "eot_index": eot_index}
        if deep is None:
            return self.run("text", feeds)[0]
        slots = self.deep_slots
        deep_inputs = {
            "deep_prompts": deep.padded(slots.text_layers, deep.n_tokens),
            "prompt_depth": np.asarray(deep.depth, np.int64),
        }
        return self.run("text_prompted", feeds | deep_inputs)[0]

    def encode_dense(self, graph: str, pixel_values: np.ndarray) -> list[np.ndarray]:
        """[B, 3, S, S] at the graph's size -> its outputs, through one of the bundle's dense
        graphs (`bundle.json: anomaly / winclip / segment`)."""
        self.dense_spec(graph)  # a clear error for bundles without the graph
        return self.run(graph, {"pixel_values": pixel_values})

    def encode_anomaly(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(image_embeds [B, E], patch_embeds [B, taps, g*g, E]) through AnomalyCLIP's graph."""
        image, patches = self.encode_dense("anomaly", pixel_values)
        return image, patches

    def encode_windows(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(image_embeds [B, E], window_embeds [B, windows, E]) through WinCLIP's graph."""
        image, windows = self.encode_dense("winclip", pixel_values)
        return image, windows

    def dense_spec(self, graph: str) -> Any:
        """What a dense graph was exported with, or a BundleError saying how to export it."""
        m = self.bundle.manifest
        if graph.startswith("segment_"):
            method = graph.removeprefix("segment_")
            spec, flag = m.segment.get(method), f"--segment {method}"
        else:
            spec = getattr(m, graph, None) if graph in ("anomaly", "winclip") else None
            flag = {"anomaly": "--anomaly-size", "winclip": "--winclip-scales"}.get(graph, "")
        if spec is None:
            raise BundleError(
                f"bundle {self.bundle.dir} has no {graph} graph; export it with {flag}".rstrip()
            )
        return spec

    @cached_property
    def deep_slots(self) -> DeepPromptSlots:
        slots = self.bundle.manifest.deep_prompts
        if slots is None:
            raise BundleError(
                f"bundle {self.bundle.dir} has no prompted graphs (MaPLe, IVLP); re-export it "
                "without --no-deep-prompts"
            )
        return slots

    @cached_property
    def text_tower(self) -> TextTower:
        return TextTower(
            self.bundle.tokenizer,
            self.bundle.token_embedding,
            self.encode_text,
            chunk_size=self.options.text_chunk_size,
            truncate=self.bundle.manifest.text_truncation,
        )

    def warmup(self) -> None:
        """One call per graph, so the first requests do not pay the runtimes' allocations."""
        size = self.bundle.manifest.preprocess.size
        pixels = np.zeros((1, 3, size, size), np.float32)
        self.encode_image(pixels)
        self.text_tower.encode_texts(["warmup"])
        if (slots := self.bundle.manifest.deep_prompts) is not None:
            plain = VisualPromptBatch.stack(
                [None], layers=slots.vision_layers, width=slots.vision_width
            )
            self.encode_image(pixels, plain)


# Imported lazily so a server without torch never imports it.
ENGINES: dict[str, str] = {
    "onnxruntime": "promptserve.serving.engines.onnx:OnnxRuntimeEngine",
    "torch": "promptserve.serving.engines.torch:TorchEngine",
    "triton": "promptserve.serving.engines.triton:TritonEngine",
}


def create_engine(name: str, bundle: Bundle, options: EngineOptions | None = None) -> Engine:
    try:
        module, cls = ENGINES[name].split(":")
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; available: {sorted(ENGINES)}") from None
    return getattr(importlib.import_module(module), cls)(bundle, options)
