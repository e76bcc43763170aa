"""Triton engine: the bundle's graphs run on an NVIDIA Triton server (a model repository written
by `promptserve export --format triton`), over gRPC (default) or HTTP with tritonclient's
asyncio clients. Triton executes the frozen encoders with its own dynamic batcher; promptserve
keeps routing, prompts, heads and the API, and still reads the bundle locally for the
tokenizer, token embeddings and graph specs.

`Engine.run` is synchronous because the family verbs built on it run in worker threads next
to CPU work (preprocessing, heads). The engine therefore owns one event loop on a daemon thread
holding the asyncio clients, and every worker thread's call is a coroutine on it. All threads
share one connection pool (`connections`: gRPC channels used round-robin, each multiplexing any
number of calls over HTTP/2; or aiohttp's pool for HTTP), and no thread holds a connection
while it waits.

With `shared_memory: system | cuda` (a co-located server), tensors go through regions
registered with the server instead of the socket: one region per tensor, in slots of one
in-flight call each, reused across calls and re-registered larger when a batch outgrows them.
Outputs whose shapes follow from the inputs' (every dim static or bound by an input's named
axis) are written by Triton into regions too; others come back over the socket.

Errors surface as `BackendUnavailable` (HTTP 503 + Retry-After) naming the server and the model:
server down or not ready, model missing or not ready, timeout. A replica's `ready()` reports the
server's and every model's readiness, so `/readyz` fails while Triton is unavailable.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from promptserve.models.bundle import Bundle
from promptserve.optional import require
from promptserve.serving.engines.base import Engine, EngineOptions, TritonClientOptions
from promptserve.serving.errors import BackendUnavailable

_DTYPES = {np.dtype(np.float32): "FP32", np.dtype(np.float16): "FP16", np.dtype(np.int64): "INT64",
           np.dtype(np.int32): "INT32"}  # fmt: skip
_ORT_DTYPES: dict[str, type[np.generic]] = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
               "tensor(int64)": np.int64, "tensor(int32)": np.int32}  # fmt: skip
T = TypeVar("T")
_PROBE_TIMEOUT_S = 10.0  # readiness probes; `timeout_s` bounds inference calls


@dataclass(frozen=True)
class _Signature:
    """A graph's tensors as ONNX Runtime reports them: dims are ints or named axes."""

    inputs: dict[str, tuple[int | str | None, ...]]
    outputs: dict[str, tuple[type[np.generic] | None, tuple[int | str | None, ...]]]
    local: bool  # left out of the Triton repository: run in-process


class _LoopThread:
    """An asyncio loop on a daemon thread; `call` runs a coroutine on it from any thread. One
    per process (`_io_loop`), shared by every TritonEngine: grpc.aio delivers completions to
    the loop it first ran on, so clients on a second loop would wait forever."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="promptserve-triton", daemon=True
        )
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


_loop_lock = threading.Lock()
_loop: _LoopThread | None = None


def _io_loop() -> _LoopThread:
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = _LoopThread()
        return _loop


class TritonEngine(Engine):
    name: ClassVar[str] = "triton"

    def __init__(self, bundle: Bundle, options: EngineOptions | None = None) -> None:
        super().__init__(bundle, options)
        self.triton = t = self.options.triton or TritonClientOptions()
        module = "tritonclient.grpc" if t.protocol == "grpc" else "tritonclient.http"
        self._tc = require(module)  # InferInput / InferRequestedOutput, shared by the aio clients
        self._aio = require(f"{module}.aio")
        self._signatures = _signatures(bundle)
        self.local_graphs = frozenset(g for g, s in self._signatures.items() if s.local)
        self._in_process: Engine | None = None
        self._in_process_lock = threading.Lock()
        self._loop = _io_loop()
        self._closed = False
        self._clients = self._loop.call(self._connect(), timeout=t.timeout_s + 10)
        self._round_robin = itertools.count()
        self._shm = _SharedMemory(self) if t.shared_memory != "none" else None
        if t.check_models_at_start:
            problems = self.problems()
            if problems:
                self.close()
                raise BackendUnavailable("; ".join(problems))

    async def _connect(self) -> list[Any]:
        t = self.triton
        if t.protocol == "http":
            # one aiohttp pool; its total timeout bounds every call
            return [
                self._aio.InferenceServerClient(
                    t.url, conn_limit=t.connections or 16, conn_timeout=t.timeout_s
                )
            ]
        return [self._aio.InferenceServerClient(t.url) for _ in range(t.connections or 1)]

    def _client(self) -> Any:
        return self._clients[next(self._round_robin) % len(self._clients)]

    def model(self, graph: str) -> str:
        return f"{self.triton.model_prefix}_{graph}"

    def problems(self) -> list[str]:
        """What keeps this engine from serving: an unreachable or unready server, missing or
        unready models (empty when ready)."""
        try:  # the server probe, then the model probes (concurrent), each bounded
            return self._loop.call(self._problems(), timeout=2 * _PROBE_TIMEOUT_S + 5)
        except concurrent.futures.TimeoutError:
            return [f"Triton at {self.triton.url} did not answer readiness probes"]

    async def _problems(self) -> list[str]:
        url, client = self.triton.url, self._clients[0]
        try:
            if not await asyncio.wait_for(client.is_server_ready(), _PROBE_TIMEOUT_S):
                return [f"Triton at {url} is not ready"]
        except Exception as exc:  # noqa: BLE001 -- any transport failure means unreachable
            return [f"Triton at {url} is unreachable ({type(exc).__name__}: {exc})"]

        async def model_ready(model: str) -> bool:
            try:
                return await asyncio.wait_for(client.is_model_ready(model), _PROBE_TIMEOUT_S)
            except Exception:  # noqa: BLE001
                return False

        models = [self.model(g) for g in self.bundle.manifest.graphs if g not in self.local_graphs]
        ready = await asyncio.gather(*map(model_ready, models))
        missing = [m for m, ok in zip(models, ready, strict=True) if not ok]
        if missing:
            return [
                f"Triton at {url} has no ready model {missing}; load the repository written by "
                "`promptserve export --format triton` for this bundle"
            ]
        return []

    def ready(self) -> bool:
        return not self.problems()

    def _local(self) -> Engine:
        """ONNX Runtime for the graphs Triton does not serve (only those are loaded)."""
        with self._in_process_lock:
            if self._in_process is None:
                from promptserve.serving.engines.onnx import OnnxRuntimeEngine

                self._in_process = OnnxRuntimeEngine(
                    self.bundle, self.options, graphs=self.local_graphs
                )
            return self._in_process

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if graph in self.local_graphs:
            return self._local().run(graph, feeds)
        signature = self._signatures[graph]
        values = {}
        for name, dims in signature.inputs.items():
            value = np.ascontiguousarray(feeds[name])
            if value.ndim == 1 and dims[:1] == ("batch",):  # per-row scalars: dims [1] + reshape []
                value = value.reshape(-1, 1)
            values[name] = value
        shm = self._shm
        slot = shm.acquire(graph) if shm else None
        done = False
        try:
            inputs = [self._input(name, value, slot) for name, value in values.items()]
            outputs, reads = [], []
            for name in signature.outputs:
                output, read = self._output(signature, name, feeds, slot)
                outputs.append(output)
                reads.append(read)
            t = self.triton
            try:
                result = self._loop.call(
                    self._infer(graph, inputs, outputs), timeout=(t.timeout_s + 1) * (t.retries + 1)
                )
            except concurrent.futures.TimeoutError:
                raise BackendUnavailable(
                    f"Triton at {t.url} failed model {self.model(graph)}: timed out"
                ) from None
            out = [read(result) for read in reads]
            done = True
            return out
        finally:
            if shm is not None and slot is not None:
                # after a failure or timeout Triton may still write into the slot's regions:
                # they are dropped, never handed to another call
                shm.release(graph, slot) if done else shm.discard(slot)

    def _shared_memory(self) -> _SharedMemory:
        """The engine's regions; a call holds a slot only when shared memory is on."""
        if self._shm is None:
            raise RuntimeError("shared-memory slot used on a Triton engine without shared memory")
        return self._shm

    def _input(self, name: str, value: np.ndarray, slot: dict[str, _Region] | None) -> Any:
        tensor = self._tc.InferInput(name, list(value.shape), _DTYPES[value.dtype])
        if slot is None:
            tensor.set_data_from_numpy(value)
        else:
            region = self._shared_memory().write(slot, name, value)
            tensor.set_shared_memory(region.name, value.nbytes)
        return tensor

    def _output(
        self,
        signature: _Signature,
        name: str,
        feeds: dict[str, np.ndarray],
        slot: dict[str, _Region] | None,
    ) -> tuple[Any, Callable[[Any], np.ndarray]]:
        output = self._tc.InferRequestedOutput(name)
        dtype, dims = signature.outputs[name]
        shape = _output_shape(signature, dims, feeds) if slot is not None else None
        if slot is None or shape is None or dtype is None:
            return output, lambda result: result.as_numpy(name)
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        shm = self._shared_memory()
        region = shm.reserve(slot, name, nbytes)
        output.set_shared_memory(region.name, nbytes)
        return output, lambda _: shm.read(region, dtype, shape)

    async def _infer(self, graph: str, inputs: list[Any], outputs: list[Any]) -> Any:
        t, model = self.triton, self.model(graph)
        extra = {"client_timeout": t.timeout_s} if t.protocol == "grpc" else {}
        last: BaseException | None = None
        for _ in range(t.retries + 1):
            try:
                call = self._client().infer(model, inputs, outputs=outputs, **extra)
                return await asyncio.wait_for(call, t.timeout_s)
            except asyncio.TimeoutError as exc:
                last = exc
                break  # a timeout is not retried: the server is busy, let the client back off
            except Exception as exc:  # noqa: BLE001 -- tritonclient raises its own types
                last = exc
                if not _retryable(exc):
                    break
        reason = "timed out" if isinstance(last, asyncio.TimeoutError) else f"{last}"
        raise BackendUnavailable(
            f"Triton at {t.url} failed model {model}: {type(last).__name__}: {reason}"
        )

    def close(self) -> None:
        """Unregister shared-memory regions and close the clients (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._shm is not None:
            self._shm.close()
        self._loop.call(_close_all(self._clients), timeout=10)


async def _close_all(clients: list[Any]) -> None:
    for client in clients:
        await client.close()


@dataclass
class _Region:
    name: str
    handle: Any
    size: int


class _SharedMemory:
    """Shared-memory regions registered with the engine's server, one per tensor, in slots of
    one in-flight call each. Slots are reused; a region a batch outgrows is unregistered and
    replaced by one twice as large (or as large as needed)."""

    def __init__(self, engine: TritonEngine) -> None:
        self.engine = engine
        self.kind = engine.triton.shared_memory
        self.device = engine.triton.cuda_device
        if self.kind == "cuda":
            self._module = require("tritonclient.utils.cuda_shared_memory")
        else:
            self._module = require("tritonclient.utils.shared_memory")
        self._free: dict[str, list[dict[str, _Region]]] = defaultdict(list)
        self._all: set[str] = set()
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._prefix = f"promptserve_{uuid.uuid4().hex[:16]}"
        self._closed = False
        self._stale: list[_Region] = []

    def acquire(self, graph: str) -> dict[str, _Region]:
        if self._stale:
            self._sweep()
        with self._lock:
            return self._free[graph].pop() if self._free[graph] else {}

    def release(self, graph: str, slot: dict[str, _Region]) -> None:
        with self._lock:
            closed = self._closed
            if not closed:
                self._free[graph].append(slot)
        if closed:  # in flight while the engine closed
            self.discard(slot)

    def discard(self, slot: dict[str, _Region]) -> None:
        """Unregister and destroy a slot's regions. One the server will not unregister yet (a
        timed-out request may still hold it) is kept and retried by later calls and close()."""
        with self._lock:
            self._stale.extend(slot.values())
        slot.clear()
        self._sweep()

    def _sweep(self) -> None:
        with self._lock:
            stale, self._stale = self._stale, []
        for region in stale:
            try:
                self._destroy(region)
            except Exception:  # noqa: BLE001 -- busy, or the server is gone: retried later
                with self._lock:
                    self._stale.append(region)

    def reserve(self, slot: dict[str, _Region], tensor: str, nbytes: int) -> _Region:
        region = slot.get(tensor)
        if region is not None and region.size >= nbytes:
            return region
        size = max(nbytes, 2 * region.size if region else 0, 1)
        if region is not None:
            del slot[tensor]  # never left pointing at a destroyed region
            self.discard({tensor: region})
        slot[tensor] = region = self._create(size)
        return region

    def write(self, slot: dict[str, _Region], tensor: str, value: np.ndarray) -> _Region:
        region = self.reserve(slot, tensor, value.nbytes)
        self._module.set_shared_memory_region(region.handle, [value])
        return region

    def read(self, region: _Region, dtype: type[np.generic], shape: tuple[int, ...]) -> np.ndarray:
        # a copy: the region is reused by the next call once this one's slot is released
        return np.array(self._module.get_contents_as_numpy(region.handle, dtype, shape))

    def _create(self, size: int) -> _Region:
        name = f"{self._prefix}_{next(self._ids)}"
        client, timeout = self.engine._clients[0], _PROBE_TIMEOUT_S  # not the inference timeout
        if self.kind == "cuda":
            handle = self._module.create_shared_memory_region(name, size, self.device)
            raw = self._module.get_raw_handle(handle)
            register = client.register_cuda_shared_memory(name, raw, self.device, size)
        else:
            handle = self._module.create_shared_memory_region(name, f"/{name}", size)
            register = client.register_system_shared_memory(name, f"/{name}", size)
        try:
            self.engine._loop.call(register, timeout)
        except Exception as exc:  # noqa: BLE001 -- tritonclient raises its own types
            self._module.destroy_shared_memory_region(handle)
            raise BackendUnavailable(
                f"Triton at {self.engine.triton.url} could not register {self.kind} shared "
                f"memory ({type(exc).__name__}: {exc}); shared_memory needs the server on this host (sharing /dev/shm, "
                "or the GPU for cuda)"
            ) from None
        with self._lock:
            self._all.add(name)
        return _Region(name, handle, size)

    def _destroy(self, region: _Region) -> None:
        client = self.engine._clients[0]
        unregister = (
            client.unregister_cuda_shared_memory(region.name)
            if self.kind == "cuda"
            else client.unregister_system_shared_memory(region.name)
        )
        self.engine._loop.call(unregister, _PROBE_TIMEOUT_S)  # raises: kept for a retry
        self._module.destroy_shared_memory_region(region.handle)
        with self._lock:
            self._all.discard(region.name)

    def close(self) -> None:
        """Drop every free slot now; slots in flight are dropped when released."""
        with self._lock:
            self._closed = True
            slots = [slot for free in self._free.values() for slot in free]
            self._free.clear()
        for slot in slots:
            self.discard(slot)
        for _ in range(20):  # late requests finish within their timeout; then give up
            if not self._stale:
                break
            time.sleep(0.25)
            self._sweep()

    def registered(self) -> set[str]:
        """Names of the regions this engine holds registered (for tests and diagnostics)."""
        with self._lock:
            return set(self._all)


def _retryable(exc: Exception) -> bool:
    """Connection-level failures (server restarting, connection refused or reset) are
    retried; errors the server answered (a bad request, a missing model) and deadlines are
    not."""
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, InferenceServerException):
        return "UNAVAILABLE" in str(exc.status() or "")
    return isinstance(exc, ConnectionError | OSError) or "connect" in type(exc).__name__.lower()


def _output_shape(
    signature: _Signature, dims: tuple[int | str | None, ...], feeds: dict[str, np.ndarray]
) -> tuple[int, ...] | None:
    """An output's shape from its static dims and the sizes the inputs give its named axes;
    None where an axis is bound by no input (then it comes back over the socket)."""
    bound: dict[str, int] = {}
    for name, input_dims in signature.inputs.items():
        for axis, dim in enumerate(input_dims):
            if isinstance(dim, str) and axis < np.ndim(feeds[name]):
                bound.setdefault(dim, int(np.shape(feeds[name])[axis]))
    shape = []
    for dim in dims:
        size = dim if isinstance(dim, int) else bound.get(dim) if isinstance(dim, str) else None
        if size is None:
            return None
        shape.append(size)
    return tuple(shape)


def _signatures(bundle: Bundle) -> dict[str, _Signature]:
    """Each graph's signature (from bundle.json: the replica need not load graphs Triton
    runs), and whether the Triton repository leaves it out (`exporters/triton.py::unsupported`)."""
    from promptserve.serving.engines.graph_rules import TensorSpec, unsupported

    def specs(values) -> list[TensorSpec]:
        return [TensorSpec(v.name, v.type, tuple(v.shape)) for v in values]

    out = {}
    for graph in bundle.manifest.graphs:
        ins, outs = bundle.signature(graph)
        out[graph] = _Signature(
            inputs={v.name: tuple(v.shape) for v in ins},
            outputs={v.name: (_ORT_DTYPES.get(v.type), tuple(v.shape)) for v in outs},
            local=unsupported(specs(ins), specs(outs)) is not None,
        )
    return out
