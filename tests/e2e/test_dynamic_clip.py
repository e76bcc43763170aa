"""`l2p` and `mocoop` through the real classify route (Ray Serve on loopback): the logits equal
the references written from the official code (tests/parity/*_reference.py) on the same
preprocessed images, and each image reports the pool entries it chose."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import reference
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "parity"))
from l2p_reference import L2PReference, l2p_checkpoint
from mocoop_reference import MoCoOpReference

from promptserve import Client
from promptserve.models.clip.export.importers.l2p import import_l2p
from promptserve.models.clip.export.importers.mocoop import import_mocoop

CLASSES = ["cat", "golden retriever", "fire truck", "sea anemone"]
TEMPLATES = ["a photo of a {}.", "{} texture.", "itap of a {}, a type of object."]


@pytest.fixture(scope="module")
def client(server):
    with Client(server["base_url"], timeout=120) as c:
        yield c


def test_l2p_route_equals_reference_and_reports_choices(
    client, tiny_model, tiny_spec, images, tmp_path
):
    pixels = reference.preprocess(tiny_model, images)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        query = tiny_model.encode_image(pixels)
    key = torch.randn(8, query.shape[1], generator=g)
    key[: len(query)] = query  # each image nearest to its own key: choices differ
    prompt = torch.randn(8, 2, tiny_model.visual.conv1.weight.shape[0], generator=g)
    art = import_l2p(
        l2p_checkpoint(tmp_path / "l2p.pth", prompt, key, 2),
        classnames=CLASSES,
        backbone=tiny_spec,
        top_n=2,
    )
    client.register_prompt(art.save(tmp_path / "l2p"), prompt_id="e2e-l2p")
    out = client.classify(images, prompt_id="e2e-l2p", top_k=2, return_logits=True, downscale=False)
    want, idx, sim = L2PReference(tiny_model, CLASSES, ["a photo of a {}."], prompt, key, 2)(pixels)
    got = np.array([r.logits for r in out.results])
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=0)
    chosen = [[c.index for c in r.chosen] for r in out.results]
    assert chosen == idx.tolist() and len({tuple(c) for c in chosen}) == len(images)
    scores = np.array([[c.score for c in r.chosen] for r in out.results])
    np.testing.assert_allclose(scores, np.take_along_axis(sim.numpy(), idx.numpy(), 1), atol=1e-4)


def test_mocoop_route_equals_reference_and_reports_experts(
    client, tiny_model, tiny_spec, images, tmp_path
):
    ref = MoCoOpReference(tiny_model, CLASSES, TEMPLATES, seed=2, correction=False)
    art = import_mocoop(
        ref.checkpoint(tmp_path / "model.pth.tar-5"),
        classnames=CLASSES,
        backbone=tiny_spec,
        templates=TEMPLATES,
    )
    client.register_prompt(art.save(tmp_path / "mocoop"), prompt_id="e2e-mocoop")
    out = client.classify(
        images, prompt_id="e2e-mocoop", top_k=2, return_logits=True, downscale=False
    )
    want, idx, weight = ref(reference.preprocess(tiny_model, images))
    np.testing.assert_allclose(
        np.array([r.logits for r in out.results]), want.numpy(), atol=1e-4, rtol=0
    )
    assert [[c.index for c in r.chosen] for r in out.results] == idx.tolist()
    weights = np.array([[c.score for c in r.chosen] for r in out.results])
    np.testing.assert_allclose(weights, weight.numpy(), atol=1e-5)
