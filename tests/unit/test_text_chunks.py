"""A free vocabulary is encoded a chunk at a time (labels x templates used to be tokenized and
embedded whole: [texts, 77, width] float32, gigabytes for 1,000 labels x 30 templates), with
the same features as encoding it at once."""

from __future__ import annotations

import numpy as np
import pytest

from promptserve.models.clip.text import TextTower, template_ensemble
from promptserve.models.clip.tokenizer import ClipTokenizer
from promptserve.serving.config import LimitsConfig
from promptserve.serving.errors import InvalidInput

open_clip = pytest.importorskip("open_clip")


def test_template_ensemble_encodes_in_chunks_with_the_same_result():
    rng = np.random.default_rng(0)
    table = rng.standard_normal((49408, 8)).astype(np.float32)
    proj = rng.standard_normal((8, 6)).astype(np.float32)
    seen: list[int] = []

    def encode(emb: np.ndarray, eot: np.ndarray, deep: object) -> np.ndarray:
        seen.append(len(emb))  # a stand-in text graph: the EOT token's embedding, projected
        return emb[np.arange(len(emb)), eot] @ proj

    tower = TextTower(ClipTokenizer(open_clip.tokenizer.default_bpe()), table, encode, chunk_size=7)
    names = [f"class {i}" for i in range(9)]
    temps = ["a photo of a {}.", "a {} in the wild.", "art of the {}."]
    got = template_ensemble(tower, names, temps)
    assert max(seen) <= 7 and sum(seen) == len(names) * len(temps)

    # the reference: every text at once, as CLIP's zero-shot classifier does
    ids = np.asarray(open_clip.tokenize([t.format(c) for c in names for t in temps]))
    feats = table[ids[np.arange(len(ids)), ids.argmax(-1)]] @ proj
    feats /= np.linalg.norm(feats, axis=-1, keepdims=True)
    mean = feats.reshape(len(names), len(temps), -1).mean(1)
    want = mean / np.linalg.norm(mean, axis=-1, keepdims=True)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_labels_times_templates_is_bounded():
    from promptserve.models.clip.serve.base import templates

    limits = LimitsConfig(max_text_sequences=100)
    assert len(templates(["a {}.", "b {}."], 50, limits)) == 2
    with pytest.raises(InvalidInput, match="51 labels x 2 templates = 102"):
        templates(["a {}.", "b {}."], 51, limits)
    with pytest.raises(InvalidInput, match="80 templates"):
        templates("imagenet80", 2, limits)  # a preset counts its templates
