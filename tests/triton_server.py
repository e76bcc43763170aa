"""A real Triton server on loopback for the tests: the `tritonserver` nvidia-pytriton bundles
(Python backend only) serving a Python-backend model repository written by
`write_model_repository(..., backend="python")`, whose models run the exported ONNX graphs with
ONNX Runtime. `.ci/run` installs the server and a numpy<2 Python path for its backend stub and
exports PROMPTSERVE_TRITON_HOME / _LIBS / _PYTHONPATH; without them the Triton tests skip."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class TritonServer:
    process: subprocess.Popen
    grpc_url: str
    http_url: str
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def triton_home() -> Path | None:
    home = os.environ.get("PROMPTSERVE_TRITON_HOME")
    return Path(home) if home and (Path(home) / "bin" / "tritonserver").exists() else None


def start_triton(repository: Path, workdir: Path, timeout_s: float = 120) -> TritonServer:
    home = triton_home()
    if home is None:
        raise RuntimeError("PROMPTSERVE_TRITON_HOME does not point at a tritonserver")
    # the backend stub must match this interpreter's version
    backends = workdir / "backends"
    shutil.copytree(home / "backends", backends, dirs_exist_ok=True)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = home / "python_backend_stubs" / version / "triton_python_backend_stub"
    shutil.copy2(stub, backends / "python" / "triton_python_backend_stub")
    (backends / "python" / "triton_python_backend_stub").chmod(0o755)
    libs = [sysconfig.get_config_var("LIBDIR"), os.environ.get("PROMPTSERVE_TRITON_LIBS", "")]
    env = {
        **os.environ,
        "LD_LIBRARY_PATH": ":".join(p for p in [*libs, os.environ.get("LD_LIBRARY_PATH", "")] if p),
    }
    http, grpc, metrics = _free_port(), _free_port(), _free_port()
    log = workdir / "tritonserver.log"
    binary = home / "bin" / "tritonserver"
    binary.chmod(binary.stat().st_mode | 0o111)
    process = subprocess.Popen(
        [str(binary), "--model-repository", str(repository), "--backend-directory", str(backends),
         "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
         "--log-verbose", "0"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    server = TritonServer(process, f"127.0.0.1:{grpc}", f"127.0.0.1:{http}", log)
    import tritonclient.http as tc

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"tritonserver exited: {log.read_text()[-3000:]}")
        try:
            if tc.InferenceServerClient(server.http_url).is_server_ready():
                return server
        except Exception:  # noqa: BLE001 -- not up yet
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"tritonserver not ready after {timeout_s}s: {log.read_text()[-3000:]}")
