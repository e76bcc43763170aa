"""Importers: official research checkpoints (or hand-written inputs) -> prompt artifacts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from promptserve.models.artifacts import ArtifactError


def read_classnames(path: str | Path) -> list[str]:
    """One class name per line (blank lines and `#` comments skipped), or a JSON list."""
    import json

    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        names = json.loads(text)
    else:
        names = [
            line.strip()
            for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ArtifactError(f"{path}: expected one class name per line (or a JSON list of strings)")
    return names


def checkpoint_source(path: str | Path, ckpt: object) -> str:
    """Provenance for a manifest: file name, training epoch and a hash prefix of the file."""
    from promptserve.models.clip.backbone import file_sha256

    epoch = ckpt.get("epoch") if isinstance(ckpt, dict) else None
    return f"{Path(path).name} (epoch {epoch}, sha256 {file_sha256(path)[:16]})"


def to_numpy(tensor) -> np.ndarray:
    """A checkpoint tensor as a contiguous numpy array, keeping fp16/fp32 (bfloat16, which numpy
    cannot hold, becomes fp32)."""
    import torch

    t = tensor.detach().cpu()
    if t.dtype not in (torch.float16, torch.float32, torch.float64):
        t = t.float()
    return np.ascontiguousarray(t.numpy())
