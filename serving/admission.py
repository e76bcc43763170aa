"""Admission at the encoder: refuse work beyond a bounded queue, at once, with 503.

Why at the encoder: its queue is the one every gateway replica feeds, so its length is the
real state of the system (a per-gateway counter admits N gateways x the limit). Why a bound:
without one, overload turns into client timeouts: every request waits behind the queue, the
clients give up, and the server keeps computing answers nobody reads.

Why a count of images, not an estimated wait (`queued / recent throughput`): that estimate
was tried (benchmarks/overload.py) and refused work while the replica sat idle: the measured
rate fell whenever refusals thinned the queue, which refused more. A queue of a few batches
keeps the engine fed and bounds the wait at a few batch times.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from promptserve.serving.errors import Overloaded


class QueueAdmission:
    """Images (or windows) admitted to a replica and not yet answered, and the bound."""

    def __init__(self, *, max_images: int, retry_after_s: int) -> None:
        self.max_images = max_images
        self.retry_after_s = retry_after_s
        self.queued = 0

    def check(self, n: int) -> None:
        """Raise Overloaded if `n` more images would pass the bound. An idle replica (nothing
        queued) always admits, so one request larger than the bound still runs."""
        if self.queued and self.queued + n > self.max_images:
            raise Overloaded(
                f"the encoder holds {self.queued} images (limit {self.max_images}); retry "
                f"after {self.retry_after_s}s",
                retry_after_s=self.retry_after_s,
            )

    @contextlib.contextmanager
    def admitted(self, n: int) -> Iterator[None]:
        """Count `n` images for the body's duration, once `check` passed."""
        self.check(n)
        self.queued += n
        try:
            yield
        finally:
            self.queued -= n
