"""Optional heavy dependencies behind one helper, so errors name the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRAS = {
    "torch": "export",
    "open_clip": "export",
    "onnx": "export",
    "onnxruntime": "serve",  # or "gpu" for onnxruntime-gpu
    "ray": "serve",
    "fastapi": "serve",
    "yaml": "serve",
    "safetensors": "serve",
    "tritonclient": "triton",
    "scipy": "eval",
    "pytrec_eval": "eval",
    "transformers": "export",
    "tokenizers": "serve",
    "qdrant_edge": "serve",
    "qdrant_client": "serve",
}


def require(module: str) -> ModuleType:
    """Import `module` or raise an ImportError that says which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = EXTRAS.get(module.split(".")[0], "dev")
        raise ImportError(
            f"{module} is needed for this; install it with `pip install 'promptserve[{extra}]'`"
        ) from exc
