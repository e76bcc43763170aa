"""Tracing a graph module to ONNX and checking it against torch: the two steps every family's
export shares (models/<family>/export/onnx.py decides which modules, inputs and files).

A module names its inputs and outputs (`input_names`, `output_names`) and its dynamic axes
(`dynamic_axes`: input name -> {axis: dim name}); `trace` turns those into bounded
`torch.export.Dim`s. `parity` runs the written file in ONNX Runtime on the same inputs and
compares (models/bundle.py::output_agreement), the report every bundle carries.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import torch

from promptserve.models.bundle import ParityResult, output_agreement

FP32_TOLERANCE = 1e-4


class ExportParityError(RuntimeError):
    """The exported graph does not reproduce torch within tolerance."""


def trace(
    module: Any,
    args: tuple,
    path: Path,
    bounds: dict[str, tuple[int, int]],
    *,
    opset: int | None = None,
    external_data: bool = False,
) -> None:
    """`torch.onnx.export(dynamo=True)` with the module's dynamic axes bounded by `bounds`
    (dim name -> (min, max)). `external_data`: weights in a `.data` file beside the graph, for
    models above protobuf's 2 GiB."""
    dims = {name: torch.export.Dim(name, min=lo, max=hi) for name, (lo, hi) in bounds.items()}
    shapes = {
        name: {axis: dims[dim] for axis, dim in module.dynamic_axes[name].items()} or None
        for name in module.input_names
    }
    kwargs: dict[str, Any] = {} if opset is None else {"opset_version": opset}
    # torch.onnx narrates every pass on stdout and warns about internals; the progress bar and
    # the parity report are what users need to see.
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=list(module.input_names),
            output_names=list(module.output_names),
            dynamic_shapes=shapes,
            dynamo=True,
            external_data=external_data,
            verbose=False,
            **kwargs,
        )


def parity(module: Any, path: Path, args: tuple, tolerance: float) -> ParityResult:
    """ONNX Runtime (CPU) on the written graph vs the torch module, on `args`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {n: a.numpy() for n, a in zip(module.input_names, args, strict=True)}
    got = session.run(None, feeds)
    with torch.no_grad():
        want = module(*args)
    want = [w.numpy() for w in (want if isinstance(want, tuple) else (want,))]
    diff, cos = output_agreement(got, want)
    return ParityResult(
        max_abs_diff=diff,
        min_cosine=cos,
        tolerance=tolerance,
        batch=len(got[0]),
        passed=diff <= tolerance,
    )


def check_report(report: dict[str, ParityResult], *, what: str, where: Path) -> None:
    """Raise ExportParityError naming every graph above its tolerance (the report is written
    first, at `where`, so the numbers can be read)."""
    failed = {k: v for k, v in report.items() if not v.passed}
    if failed:
        tolerance = max(v.tolerance for v in failed.values())
        raise ExportParityError(
            f"{what} differs from torch above {tolerance}: "
            + ", ".join(f"{k} max|diff|={v.max_abs_diff:.2e}" for k, v in failed.items())
            + f" (report in {where})"
        )
