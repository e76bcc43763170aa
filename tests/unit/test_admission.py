"""The encoder's admission bound: counts what is in the replica, refuses beyond, frees on exit
(failures included), and never refuses an idle replica."""

from __future__ import annotations

import pytest

from promptserve.serving.admission import QueueAdmission
from promptserve.serving.config import EncoderConfig
from promptserve.serving.errors import Overloaded


def test_refuses_beyond_the_bound_and_frees_on_exit():
    adm = QueueAdmission(max_images=4, retry_after_s=3)
    with adm.admitted(3):
        with adm.admitted(1):
            assert adm.queued == 4
            with pytest.raises(Overloaded) as refused, adm.admitted(1):
                pass
            assert refused.value.headers["Retry-After"] == "3"
            assert adm.queued == 4  # a refusal holds nothing
        with pytest.raises(RuntimeError), adm.admitted(1):
            raise RuntimeError("the engine failed")
        assert adm.queued == 3  # freed on failure too
    assert adm.queued == 0


def test_an_idle_replica_admits_a_request_larger_than_the_bound():
    adm = QueueAdmission(max_images=4, retry_after_s=1)
    with adm.admitted(10), pytest.raises(Overloaded):
        adm.check(1)


def test_default_bound_follows_the_batch_size():
    assert EncoderConfig(max_batch_size=8).queued_images_bound() == 32
    assert EncoderConfig(max_batch_size=8, max_queued_images=5).queued_images_bound() == 5
