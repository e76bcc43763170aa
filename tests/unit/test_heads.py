"""The replica's head caches (models/clip/serve/heads.py): registered prompts by content id,
LRU-evicted; free-label features per (templates, label), computing only what is missing."""

from __future__ import annotations

import numpy as np
import pytest

from promptserve.models.clip.export.importers.templates import build_templates
from promptserve.models.clip.methods.templates import TemplatesMethod
from promptserve.models.clip.runtime import ClipGraphs
from promptserve.models.clip.serve.heads import HeadBank
from promptserve.serving.errors import PromptNotFound
from promptserve.serving.store import PromptStore


@pytest.fixture
def bank(tiny_bundle, tmp_path):
    tower = ClipGraphs.create("onnxruntime", tiny_bundle).text_tower
    encoded: list[int] = []
    real = tower._encode_fn
    tower._encode_fn = lambda e, i, d: (encoded.append(len(e)), real(e, i, d))[1]
    store = PromptStore(str(tmp_path / "store"))
    bank = HeadBank(store, tower, max_loaded=2, text_cache_size=3)
    return bank, store, tower, encoded


def _register(store, tower, name, classes, backbone):
    art = build_templates(classes, backbone_id=backbone, templates=["a photo of a {}."])
    store.put(name, art, TemplatesMethod.class_features(art, tower))
    return art.content_id


def test_prompt_heads_are_cached_by_content_and_evicted_lru(bank, tiny_bundle):
    bank, store, tower, _ = bank
    ids = {n: _register(store, tower, n, [n, "other"], tiny_bundle.backbone_id) for n in "abc"}
    first = bank.prompt_head("a", ids["a"])
    assert bank.prompt_head("a", ids["a"]) is first  # no second load
    assert bank.cached(content_id=ids["a"], labels=None, templates=()) is first
    bank.prompt_head("b", ids["b"])
    bank.prompt_head("c", ids["c"])  # max_loaded 2: "a" was least recently used
    assert bank.cached(content_id=ids["a"], labels=None, templates=()) is None
    assert bank.cached(content_id=ids["c"], labels=None, templates=()) is not None
    store.delete("a")  # a load after deletion is a 404, not a stale head
    with pytest.raises(PromptNotFound):
        bank.prompt_head("a", ids["a"])


def test_label_features_computed_once_per_label_and_templates(bank):
    bank, _, _, encoded = bank
    templates = ("a photo of a {}.",)
    assert bank.cached(content_id=None, labels=["cat", "dog"], templates=templates) is None
    head = bank.label_head(["cat", "dog"], templates)
    assert encoded == [2] and head.labels == ("cat", "dog")
    again = bank.label_head(["dog", "cow", "cat"], templates)
    assert encoded == [2, 1]  # only "cow" was new
    np.testing.assert_array_equal(again.features[[2, 0]], head.features)
    assert bank.cached(content_id=None, labels=["cat", "cow"], templates=templates) is not None
    bank.label_head(["cat"], ("a {}.",))  # other templates: other features
    assert encoded == [2, 1, 1]
    # text_cache_size 3: the oldest label entries were evicted
    assert bank.cached(content_id=None, labels=["dog"], templates=templates) is None
