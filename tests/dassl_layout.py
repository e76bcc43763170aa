"""Dassl's scheduler classes, importable only while a checkpoint is being written.

Official CoOp checkpoints pickle Dassl scheduler objects (KaiyangZhou/Dassl.pytorch
`dassl/optim/lr_scheduler.py`): the warmup wrapper keeps the real scheduler as `successor`, and
`state_dict()` returns `__dict__`, so the file references `dassl.optim.lr_scheduler` classes.
Tests write such files inside `dassl_importable()` and read them back after it, when no `dassl`
module exists, exactly as a user's machine without Dassl would.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager

from torch.optim.lr_scheduler import _LRScheduler

DASSL_MODULE = "dassl.optim.lr_scheduler"


def _lr_scheduler_module() -> types.ModuleType:
    """Mirror of `dassl/optim/lr_scheduler.py` (the constant warmup CoOp's configs use)."""
    mod = types.ModuleType(DASSL_MODULE)

    class _BaseWarmupScheduler(_LRScheduler):
        def __init__(self, optimizer, successor, warmup_epoch, last_epoch=-1):
            self.successor = successor
            self.warmup_epoch = warmup_epoch
            super().__init__(optimizer, last_epoch)

        def get_lr(self):
            raise NotImplementedError

        def step(self, epoch=None):
            if self.last_epoch >= self.warmup_epoch:
                self.successor.step(epoch)
                self._last_lr = self.successor.get_last_lr()
            else:
                super().step(epoch)

    class ConstantWarmupScheduler(_BaseWarmupScheduler):
        def __init__(self, optimizer, successor, warmup_epoch, cons_lr, last_epoch=-1):
            self.cons_lr = cons_lr
            super().__init__(optimizer, successor, warmup_epoch, last_epoch)

        def get_lr(self):
            if self.last_epoch >= self.warmup_epoch:
                return self.successor.get_last_lr()
            return [self.cons_lr for _ in self.base_lrs]

    for cls in (_BaseWarmupScheduler, ConstantWarmupScheduler):
        cls.__module__ = DASSL_MODULE
        cls.__qualname__ = cls.__name__
        setattr(mod, cls.__name__, cls)
    return mod


@contextmanager
def dassl_importable() -> Iterator[types.ModuleType]:
    """Install `dassl.optim.lr_scheduler` (and its parent packages, which pickle's import
    needs) in sys.modules for the duration; yields the scheduler module."""
    mod = _lr_scheduler_module()
    fake = {"dassl": types.ModuleType("dassl"), "dassl.optim": types.ModuleType("dassl.optim")}
    sys.modules.update({**fake, DASSL_MODULE: mod})
    try:
        yield mod
    finally:
        for name in (*fake, DASSL_MODULE):
            del sys.modules[name]
