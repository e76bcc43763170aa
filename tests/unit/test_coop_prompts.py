"""CoOp prompt construction edge cases (the parity tests cover the computation itself)."""

from __future__ import annotations

import numpy as np
import pytest

from promptserve.models.artifacts import ArtifactError
from promptserve.models.clip.methods.coop import build_prompts
from promptserve.models.clip.runtime import ClipGraphs


@pytest.fixture(scope="module")
def tower(tiny_bundle):
    return ClipGraphs.create("onnxruntime", tiny_bundle).text_tower


@pytest.mark.parametrize("position", ["end", "middle", "front"])
def test_overlong_class_name_is_refused_not_truncated(tower, position):
    ctx = np.zeros((16, 64), np.float32)
    with pytest.raises(ArtifactError, match="too long"):
        build_prompts(tower, ctx, ["cat", " ".join(["dog"] * 70)], position)
    prompts, eot = build_prompts(tower, ctx, ["cat", " ".join(["dog"] * 50)], position)
    assert prompts.shape == (2, 77, 64) and eot.tolist() == [1 + 16 + 2, 1 + 16 + 51]
