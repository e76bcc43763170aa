"""Export a graph module to ONNX and check ONNX Runtime reproduces torch on other inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from promptserve.exporters.onnx import trace as _export


def assert_onnx_matches_torch(
    graph: torch.nn.Module, example: torch.Tensor, pixels: torch.Tensor, path: Path
) -> None:
    """`graph` takes pixel_values; exported with a dynamic batch, run at another batch size."""
    import onnxruntime as ort

    graph = graph.eval()
    _export(graph, (example,), path, {"batch": (1, 1 << 16)})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"pixel_values": pixels.numpy()})
    with torch.no_grad():
        want = graph(pixels)
    want = (want,) if isinstance(want, torch.Tensor) else want
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-4)
