"""Triton engine: the bundle's graphs run on an NVIDIA Triton server (a model repository written
by `promptserve export --format triton`), over gRPC (default) or HTTP with tritonclient. Triton
executes the frozen encoders with its own dynamic batcher; promptserve keeps routing, prompts,
heads and the API, and still reads the bundle locally for the tokenizer, token embeddings and
graph specs.

Errors surface as `BackendUnavailable` (HTTP 503 + Retry-After) naming the server and the model:
server down or not ready, model missing or not ready, timeout. A replica's `ready()` reports the
server's and every model's readiness, so `/readyz` fails while Triton is unavailable.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import numpy as np

from promptserve._optional import require
from promptserve.exporters.bundle import Bundle
from promptserve.serving.engines.base import Engine, EngineOptions, TritonClientOptions
from promptserve.serving.errors import BackendUnavailable

_DTYPES = {np.dtype(np.float32): "FP32", np.dtype(np.float16): "FP16", np.dtype(np.int64): "INT64",
           np.dtype(np.int32): "INT32"}  # fmt: skip


class TritonEngine(Engine):
    name: ClassVar[str] = "triton"

    def __init__(self, bundle: Bundle, options: EngineOptions | None = None) -> None:
        super().__init__(bundle, options)
        self.triton = self.options.triton or TritonClientOptions()
        module = "tritonclient.grpc" if self.triton.protocol == "grpc" else "tritonclient.http"
        self._client_module = require(module)
        self._local = threading.local()  # one client (one connection pool) per thread
        self.local_graphs = _local_graphs(bundle)
        self._in_process: Engine | None = None
        if self.triton.check_models_at_start:
            problems = self.problems()
            if problems:
                raise BackendUnavailable("; ".join(problems))

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            if self.triton.protocol == "http":
                t = self.triton.timeout_s
                client = self._client_module.InferenceServerClient(
                    self.triton.url, connection_timeout=t, network_timeout=t
                )
            else:
                client = self._client_module.InferenceServerClient(self.triton.url)
            self._local.client = client
        return client

    def model(self, graph: str) -> str:
        return f"{self.triton.model_prefix}_{graph}"

    def problems(self) -> list[str]:
        """What keeps this engine from serving: an unreachable or unready server, missing or
        unready models (empty when ready)."""
        url = self.triton.url
        try:
            if not self._client().is_server_ready():
                return [f"Triton at {url} is not ready"]
        except Exception as exc:  # noqa: BLE001 -- any transport failure means unreachable
            return [f"Triton at {url} is unreachable ({type(exc).__name__}: {exc})"]
        missing = []
        for graph in self.bundle.manifest.graphs:
            if graph in self.local_graphs:
                continue
            try:
                ready = self._client().is_model_ready(self.model(graph))
            except Exception:  # noqa: BLE001
                ready = False
            if not ready:
                missing.append(self.model(graph))
        if missing:
            return [
                f"Triton at {url} has no ready model {missing}; load the repository written by "
                "`promptserve export --format triton` for this bundle"
            ]
        return []

    def ready(self) -> bool:
        return not self.problems()

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if graph in self.local_graphs:
            if self._in_process is None:
                from promptserve.serving.engines.onnx import OnnxRuntimeEngine

                self._in_process = OnnxRuntimeEngine(self.bundle, self.options)
            return self._in_process.run(graph, feeds)
        tc = self._client_module
        info = self.bundle.manifest.graphs[graph]
        inputs = []
        for name in info.inputs:
            value = np.ascontiguousarray(feeds[name])
            if value.ndim <= 1:  # per-row scalars: dims [1] + reshape [] (exporters/triton.py)
                value = value.reshape(*value.shape, 1)  # scalars: dims [1] + reshape []
            tensor = tc.InferInput(name, list(value.shape), _DTYPES[value.dtype])
            tensor.set_data_from_numpy(value)
            inputs.append(tensor)
        outputs = [tc.InferRequestedOutput(name) for name in info.outputs]
        last: Exception | None = None
        for _ in range(self.triton.retries + 1):
            try:
                timeout = (
                    {"client_timeout": self.triton.timeout_s}
                    if self.triton.protocol == "grpc"
                    else {}
                )
                result = self._client().infer(self.model(graph), inputs, outputs=outputs, **timeout)
                return [result.as_numpy(name) for name in info.outputs]
            except Exception as exc:  # noqa: BLE001 -- tritonclient raises its own types
                last = exc
                if "deadline" in str(exc).lower() or "timed out" in str(exc).lower():
                    break  # a timeout is not retried: the server is busy, let the client back off
        raise BackendUnavailable(
            f"Triton at {self.triton.url} failed model {self.model(graph)}: "
            f"{type(last).__name__}: {last}"
        )


def _local_graphs(bundle: Bundle) -> frozenset[str]:
    """Graphs the Triton repository leaves out (`exporters/triton.py::unsupported`), read from
    the graphs' signatures with ONNX Runtime (no onnx package in serving images)."""
    import onnxruntime as ort

    from promptserve.exporters.triton import TensorSpec, unsupported

    def specs(values) -> list[TensorSpec]:
        return [TensorSpec(v.name, v.type, tuple(v.shape)) for v in values]

    out = set()
    for graph in bundle.manifest.graphs:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(
            str(bundle.graph_path(graph)), so, providers=["CPUExecutionProvider"]
        )
        if unsupported(specs(session.get_inputs()), specs(session.get_outputs())):
            out.add(graph)
    return frozenset(out)
