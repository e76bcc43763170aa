"""Reading Dassl/CoOp checkpoints without executing their pickles."""

from __future__ import annotations

import builtins
import os
import pickle
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from dassl_layout import DASSL_MODULE, dassl_importable  # noqa: E402
from torch.optim.lr_scheduler import CosineAnnealingLR  # noqa: E402

from promptserve.exporters import checkpoints  # noqa: E402

CheckpointError = checkpoints.CheckpointError
Stub = checkpoints.Stub
extract_state_dict = checkpoints.extract_state_dict
load_checkpoint = checkpoints.load_checkpoint


def _save_dassl_checkpoint(
    path: Path,
    ctx_init: torch.Tensor,
    *,
    legacy: bool = False,
    extra: Callable[[Any], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Train one step like CoOp does, then save exactly what dassl's save_checkpoint writes."""
    with dassl_importable() as mod:
        ctx = torch.nn.Parameter(ctx_init.clone())
        n_cls, dim = 3, ctx_init.shape[-1]
        prefix = torch.randn(n_cls, 1, dim).to(ctx_init.dtype)
        suffix = torch.randn(n_cls, 5, dim).to(ctx_init.dtype)
        optim = torch.optim.SGD([ctx], lr=0.002, momentum=0.9)
        sched = mod.ConstantWarmupScheduler(optim, CosineAnnealingLR(optim, 50), 1, 1e-5)
        ctx.grad = torch.ones_like(ctx)
        optim.step()
        sched.step()
        state_dict = {"ctx": ctx.detach().clone(), "token_prefix": prefix, "token_suffix": suffix}
        ckpt = {
            "state_dict": state_dict,
            "epoch": 50,
            "optimizer": optim.state_dict(),
            "scheduler": sched.state_dict(),
            "val_result": None,
            **(extra(sched) if extra else {}),
        }
        torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
        return state_dict


CASES = {
    "fp16-generic-ctx": (torch.randn(4, 16).half(), False),
    "fp32-class-specific-ctx": (torch.randn(3, 4, 16), False),
    "fp16-legacy-format": (torch.randn(4, 16).half(), True),
}


@pytest.mark.parametrize("case", CASES)
def test_dassl_checkpoint_round_trip(tmp_path: Path, case: str) -> None:
    ctx_init, legacy = CASES[case]
    path = tmp_path / "prompt_learner" / "model.pth.tar-50"
    path.parent.mkdir()
    saved = _save_dassl_checkpoint(path, ctx_init, legacy=legacy)

    with pytest.raises(pickle.UnpicklingError, match="CosineAnnealingLR"):
        torch.load(path, weights_only=True)  # why the fallback exists

    ckpt = load_checkpoint(path)
    assert DASSL_MODULE not in sys.modules
    assert ckpt["epoch"] == 50 and ckpt["val_result"] is None
    weights = extract_state_dict(ckpt)
    assert set(weights) == {"ctx", "token_prefix", "token_suffix"}
    for key, tensor in saved.items():
        assert weights[key].dtype == tensor.dtype and weights[key].shape == tensor.shape
        assert torch.equal(weights[key], tensor)
    assert ckpt["optimizer"]["param_groups"][0]["lr"] == 0.002

    successor = ckpt["scheduler"]["successor"]
    assert isinstance(successor, Stub)
    assert successor.qualname() == "torch.optim.lr_scheduler.CosineAnnealingLR"
    assert successor.state["T_max"] == 50
    sgd = successor.state["optimizer"]
    assert isinstance(sgd, Stub) and sgd.qualname() == "torch.optim.sgd.SGD"
    assert ckpt["scheduler"]["cons_lr"] == 1e-5 and ckpt["scheduler"]["warmup_epoch"] == 1


def test_pickled_dassl_object_becomes_stub_without_import(tmp_path: Path) -> None:
    path = tmp_path / "model-best.pth.tar"
    _save_dassl_checkpoint(path, torch.randn(4, 16), extra=lambda sched: {"sched_obj": sched})
    ckpt = load_checkpoint(path)
    assert "dassl" not in sys.modules and DASSL_MODULE not in sys.modules
    obj = ckpt["sched_obj"]
    assert obj.qualname() == f"{DASSL_MODULE}.ConstantWarmupScheduler"
    assert obj.state["successor"].qualname() == "torch.optim.lr_scheduler.CosineAnnealingLR"


class _Payload:
    def __init__(self, func: Any, arg: str) -> None:
        self.func, self.arg = func, arg

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return self.func, (self.arg,)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_malicious_globals_are_never_called(tmp_path: Path, legacy: bool) -> None:
    touched, written = tmp_path / "touched", tmp_path / "written"
    path = tmp_path / "evil.pth"
    ckpt = {
        "state_dict": {"module.w": torch.arange(3.0)},
        "shell": _Payload(os.system, f"touch {touched}"),
        "exec": _Payload(builtins.exec, f"open({str(written)!r}, 'w').close()"),
        "eval": _Payload(builtins.eval, f"open({str(written)!r}, 'w').close()"),
        "plain": {"tags": {"a", "b"}, "frozen": frozenset({1}), "blob": b"\x00\xff", "c": 1j},
    }
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)

    loaded = load_checkpoint(path)
    assert not touched.exists() and not written.exists()
    assert isinstance(loaded["shell"], Stub) and loaded["shell"].name == "system"
    assert loaded["shell"].args == (f"touch {touched}",)
    assert loaded["exec"].qualname() == "builtins.exec"
    assert loaded["eval"](1, 2).args == (1, 2)  # calling a stub stays inert
    assert not written.exists()
    assert loaded["plain"] == ckpt["plain"]  # protocol-2 `__builtin__.set`, `_codecs.encode`
    assert torch.equal(extract_state_dict(loaded)["w"], torch.arange(3.0))

    # The payload is live: an unrestricted load really runs it.
    torch.load(path, weights_only=False)
    assert written.exists()


def test_not_a_checkpoint(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(random.Random(0).randbytes(4096))  # seeded: the test must not flake
    with pytest.raises(CheckpointError, match=r"junk\.pth"):
        load_checkpoint(junk)
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "missing.pth")
    module = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), module)
    with pytest.raises(CheckpointError, match=r"torch\.nn\.modules\.linear\.Linear"):
        load_checkpoint(module)


def test_plain_state_dict_and_safetensors(tmp_path: Path) -> None:
    plain = tmp_path / "plain.pt"
    torch.save({"module.ctx": torch.ones(2, 4), "step": 3}, plain)
    assert list(extract_state_dict(load_checkpoint(plain))) == ["ctx"]
    with pytest.raises(CheckpointError, match="no tensors"):
        extract_state_dict({"state_dict": {"epoch": 1}})

    safetensors_torch = pytest.importorskip("safetensors.torch")
    st = tmp_path / "prompt.safetensors"
    safetensors_torch.save_file({"ctx": torch.zeros(4, 8, dtype=torch.float16)}, st)
    weights = extract_state_dict(load_checkpoint(st))
    assert weights["ctx"].dtype == torch.float16 and weights["ctx"].shape == (4, 8)
