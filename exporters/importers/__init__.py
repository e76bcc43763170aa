"""Importers: official research checkpoints (or hand-written inputs) -> prompt artifacts."""

from __future__ import annotations

from pathlib import Path

from promptserve.exporters.artifacts import ArtifactError


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
