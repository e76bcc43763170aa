"""Read research-repo training checkpoints without executing their pickles.

Dassl (CoOp, CoCoOp, MaPLe...) checkpoints hold the scheduler's ``__dict__``, which pickles the
wrapped ``CosineAnnealingLR`` *object* (and through it the SGD optimizer), so
``torch.load(weights_only=True)`` refuses them, and plain pickle would import and run whatever
the file names. We fall back to a restricted unpickler: tensors, storages, dtypes and plain
containers are rebuilt; every other global becomes an inert :class:`Stub` that records what the
file asked for and never imports or calls anything."""

from __future__ import annotations

import collections
import functools
import logging
import os
import pickle
import types
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

__all__ = ["CheckpointError", "Stub", "extract_state_dict", "load_checkpoint"]

logger = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint file could not be read or holds no usable weights (message names both)."""


class Stub:
    """Inert stand-in for a class or function named in a pickle; never calls the original.

    Records what each opcode that may touch it passes: REDUCE/NEWOBJ (``args``/``kwargs``),
    BUILD (``state``), APPENDS (``items``), SETITEMS (``setitems``). ``__init__`` is object's.
    """

    module: ClassVar[str] = ""
    name: ClassVar[str] = ""
    # per instance, set in __new__
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    state: Any
    items: list[Any]
    setitems: dict[Any, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Stub:
        self = object.__new__(cls)
        self.args, self.kwargs = args, kwargs
        self.state = None
        self.items = []
        self.setitems = {}
        return self

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def append(self, item: Any) -> None:
        self.items.append(item)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.setitems[key] = value

    def __call__(self, *args: Any, **kwargs: Any) -> Stub:
        """A pickle may REDUCE on a stub instance; answer with another inert record."""
        return _stub_class(self.module, f"{self.name}()")(*args, **kwargs)

    @classmethod
    def qualname(cls) -> str:
        return f"{cls.module}.{cls.name}"

    def __repr__(self) -> str:
        return f"<Stub {self.qualname()} args={self.args!r} state={type(self.state).__name__}>"


@functools.lru_cache(maxsize=1024)
def _stub_class(module: str, name: str) -> type[Stub]:
    logger.debug("checkpoint names %s.%s; replaced by an inert stub", module, name)
    return type("Stub", (Stub,), {"module": module, "name": name, "__module__": __name__})


def _safe_codecs_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Protocol-2 pickles store ``bytes`` as ``_codecs.encode(str, "latin1")``; allow only that."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode({type(obj).__name__}, {encoding!r})")
    return obj.encode("latin-1", errors)


def _safe_defaultdict(factory: Any = None, *args: Any) -> collections.defaultdict[Any, Any]:
    """Optimizer state is a ``defaultdict(dict)``; a non-builtin factory is dropped, not kept."""
    return collections.defaultdict(factory if factory in (dict, list, set, int) else None, *args)


def _safe_rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    """Tensors carrying Python attributes are pickled through this; only plain tensor types."""
    if func not in _TENSOR_REBUILDERS.values() or new_type not in (
        torch.Tensor,
        torch.nn.Parameter,
    ):
        return _stub_class("torch._tensor", "_rebuild_from_type_v2")(func, new_type, args, state)
    return torch._tensor._rebuild_from_type_v2(func, new_type, args, state)


_TENSOR_REBUILDERS = {
    f"torch._utils.{n}": getattr(torch._utils, n)
    for n in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
              "_rebuild_parameter_with_state") if hasattr(torch._utils, n)
}  # fmt: skip
_ALLOWED: dict[str, Any] = {
    **_TENSOR_REBUILDERS,
    **{f"builtins.{t.__name__}": t for t in (set, frozenset, complex, bytearray, bytes, slice,
                                             range, int, float, bool, str, tuple, list, dict)},
    **{f"torch.{str(v).removeprefix('torch.')}": v for v in vars(torch).values()
       if isinstance(v, torch.dtype | torch.layout)},
    "collections.OrderedDict": collections.OrderedDict,
    "collections.defaultdict": _safe_defaultdict,
    "_codecs.encode": _safe_codecs_encode,
    "torch.Size": torch.Size,
    "torch.device": torch.device,
    "torch.Tensor": torch.Tensor,
    "torch.nn.parameter.Parameter": torch.nn.Parameter,
    "torch.storage.UntypedStorage": torch.UntypedStorage,
    "torch.serialization._get_layout": torch.serialization._get_layout,
    "torch._tensor._rebuild_from_type_v2": _safe_rebuild_from_type_v2,
}  # fmt: skip
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}  # protocol 2 (torch.save's)


class _RestrictedUnpickler(pickle.Unpickler):
    """torch.load subclasses this and handles storages itself; every other global lands here."""

    def find_class(self, module: str, name: str) -> Any:
        module = _PY2_MODULES.get(module, module)
        return _ALLOWED.get(f"{module}.{name}") or _stub_class(module, name)


# torch.load(pickle_module=...) wants a module-like object with ``Unpickler``, ``load``, __name__.
_PICKLE = types.SimpleNamespace(
    __name__="promptserve_restricted_pickle",
    Unpickler=_RestrictedUnpickler,
    load=lambda file, **kwargs: _RestrictedUnpickler(file, **kwargs).load(),
)


def _summarize(err: Exception) -> str:
    """torch's weights-only message is a page long; keep the line that names the culprit."""
    lines = [ln.strip() for ln in str(err).replace("WeightsUnpickler error:", "\n").splitlines()]
    hits = [ln for ln in lines if ln.startswith(("Unsupported", "Trying", "Unpickling"))]
    return ((hits or [ln for ln in lines if ln] or [type(err).__name__])[0])[:300]


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load onto the CPU without running code: weights-only torch.load, else (Dassl's pickled
    scheduler objects) the restricted unpickler; ``.safetensors`` -> ``{"state_dict": ...}``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file

            return {"state_dict": load_file(path, device="cpu")}
        except Exception as e:  # ImportError included: its message says what to install
            raise CheckpointError(f"{path}: unreadable safetensors file ({e!r})") from e
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as strict_err:  # noqa: BLE001 - any refusal sends us to the restricted reader
        reason = _summarize(strict_err)
        logger.info("%s: weights-only load refused (%s); using restricted unpickler", path, reason)
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_PICKLE)
        except Exception as e:
            raise CheckpointError(
                f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e}); "
                f"weights-only load said: {reason}"
            ) from e
    if not isinstance(ckpt, Mapping):
        kind = ckpt.qualname() if isinstance(ckpt, Stub) else type(ckpt).__name__
        raise CheckpointError(
            f"{path}: holds a pickled {kind}, not a dict of weights; "
            "re-save it with torch.save({'state_dict': model.state_dict()}, path)"
        )
    return dict(ckpt)


def extract_state_dict(
    ckpt: Mapping[str, Any], *, prefixes_to_strip: tuple[str, ...] = ("module.",)
) -> dict[str, torch.Tensor]:
    """Tensors of ``ckpt["state_dict"]`` (else of ``ckpt``), non-tensors dropped and the
    DataParallel ``module.`` prefix stripped so keys match the bare model's."""
    inner = ckpt.get("state_dict", ckpt) if isinstance(ckpt, Mapping) else None
    if not isinstance(inner, Mapping):
        raise CheckpointError(f"checkpoint has no state_dict mapping (got {type(inner).__name__})")
    out: dict[str, torch.Tensor] = {}
    for key, value in inner.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            continue
        clean = key.removeprefix(next((p for p in prefixes_to_strip if key.startswith(p)), ""))
        if clean in out:
            raise CheckpointError(f"state_dict key {key!r} collides with another after stripping")
        out[clean] = value
    if not out:
        raise CheckpointError(f"checkpoint state_dict holds no tensors (keys: {list(inner)[:9]})")
    return out
