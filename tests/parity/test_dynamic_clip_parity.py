"""Per-image dynamic prompting on CLIP (`l2p`, `mocoop`) against references written from the
official code (tests/parity/l2p_reference.py, mocoop_reference.py), on checkpoints laid out as
the official trainers save them; and a batch whose images chose differently equals each image
run alone (the served path batches rows with different prompts into one graph call)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from l2p_reference import L2PReference, l2p_checkpoint
from mocoop_reference import MoCoOpReference

from promptserve.models.artifacts import ArtifactError, PromptArtifact
from promptserve.models.clip.deep_prompts import VisualPromptBatch
from promptserve.models.clip.export.importers.l2p import import_l2p
from promptserve.models.clip.export.importers.mocoop import import_mocoop
from promptserve.models.clip.methods import get_method

CLASSNAMES = ["golden_retriever", "air conditioner", "cat", "sea anemone", "fire truck"]
L2P_TEMPLATES = ["a photo of a {}.", "a drawing of the {}."]
# MoCoOp experts: context on both sides, none before ("{} texture."), and a long prefix
MOCOOP_TEMPLATES = [
    "a photo of a {}.",
    "{} texture.",
    "a low resolution photo of the {}.",
    "itap of a {}, a type of object.",
]
POOL, LENGTH, TOP_N = 8, 2, 3


@pytest.fixture(scope="module")
def engines(tiny_bundle):
    from promptserve.models.clip.runtime import ClipGraphs

    return {name: ClipGraphs.create(name, tiny_bundle) for name in ("torch", "onnxruntime")}


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return np.random.default_rng(11).standard_normal((6, 3, 224, 224)).astype(np.float32)


def _registered(art: PromptArtifact, engine, bundle):
    """Validation, class features and head, as a replica builds them at registration."""
    method = get_method(art.manifest.method)
    method.validate(art, bundle.manifest.config)
    tower = engine.text_tower
    return method.make_head(art, method.class_features(art, tower), tower)


# -- l2p ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def l2p_pool(tiny_model, pixels):
    """Keys near the first images' frozen features, so those images choose different prompts."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        query = tiny_model.encode_image(torch.from_numpy(pixels))
    width = tiny_model.visual.conv1.weight.shape[0]
    key = torch.randn(POOL, query.shape[1], generator=g)
    key[: len(query)] = (
        query
        + 0.3
        * query.norm(dim=1, keepdim=True)
        * torch.randn(query.shape, generator=g)
        / query.shape[1] ** 0.5
    )
    prompt = torch.randn(POOL, LENGTH, width, generator=g)
    return prompt, key


def _l2p_serve(head, engine, bundle, pixels: np.ndarray):
    """The encoder's L2P path: plain pass (query), routing, one prompted call for all rows."""
    slots = bundle.manifest.config.deep_prompts
    routing = head.route(engine.encode_image(pixels))
    rows = [None] * len(pixels)
    for prompts, idx in routing.groups:
        for i in idx:
            rows[i] = prompts
    batch = VisualPromptBatch.stack(rows, layers=slots.vision_layers, width=slots.vision_width)
    embeds = engine.encode_image(pixels, batch)
    return head.logits(embeds, bundle.manifest.config.logit_scale), routing


@pytest.mark.parametrize("engine_name", ["torch", "onnxruntime"])
def test_l2p_matches_official_forward(
    engine_name, engines, tiny_model, tiny_spec, tiny_bundle, pixels, l2p_pool, tmp_path
):
    prompt, key = l2p_pool
    path = l2p_checkpoint(tmp_path / "task10_checkpoint.pth", prompt, key, TOP_N)
    art = import_l2p(
        path, classnames=CLASSNAMES, backbone=tiny_spec, top_n=TOP_N, templates=L2P_TEMPLATES
    )
    art = PromptArtifact.load(art.save(tmp_path / "artifact"))
    head = _registered(art, engines[engine_name], tiny_bundle)
    got, routing = _l2p_serve(head, engines[engine_name], tiny_bundle, pixels)
    ref = L2PReference(tiny_model, CLASSNAMES, L2P_TEMPLATES, prompt, key, TOP_N)
    want, idx, sim = ref(torch.from_numpy(pixels))
    np.testing.assert_array_equal(routing.index, idx.numpy())
    np.testing.assert_allclose(
        routing.score, np.take_along_axis(sim.numpy(), idx.numpy(), 1), atol=1e-5
    )
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=1e-4)
    # the images did choose differently, and the prompts reach the logits
    assert len({tuple(r) for r in routing.index.tolist()}) >= 4
    plain = head.logits(
        engines[engine_name].encode_image(pixels), tiny_bundle.manifest.config.logit_scale
    )
    assert np.abs(plain - got).max() > 1e-2


@pytest.mark.parametrize("engine_name", ["torch", "onnxruntime"])
def test_l2p_mixed_batch_equals_each_image_alone(
    engine_name, engines, tiny_spec, tiny_bundle, pixels, l2p_pool, tmp_path
):
    prompt, key = l2p_pool
    path = l2p_checkpoint(tmp_path / "ckpt.pth", prompt, key, TOP_N)
    art = import_l2p(path, classnames=CLASSNAMES, backbone=tiny_spec, top_n=TOP_N)
    engine = engines[engine_name]
    head = _registered(art, engine, tiny_bundle)
    mixed, routing = _l2p_serve(head, engine, tiny_bundle, pixels)
    assert len(routing.groups) >= 4
    for i in range(len(pixels)):
        alone, r = _l2p_serve(head, engine, tiny_bundle, pixels[i : i + 1])
        np.testing.assert_array_equal(r.index[0], routing.index[i])
        np.testing.assert_allclose(mixed[i], alone[0], atol=1e-4, rtol=1e-5)


def test_l2p_validation_errors(tiny_spec, tiny_bundle, l2p_pool, tmp_path):
    prompt, key = l2p_pool
    cfg = tiny_bundle.manifest.config
    art = import_l2p(
        l2p_checkpoint(tmp_path / "a.pth", prompt, key, TOP_N),
        classnames=CLASSNAMES,
        backbone=tiny_spec,
        top_n=TOP_N,
    )
    method = get_method("l2p")
    narrow = cfg.deep_prompts.model_copy(update={"max_tokens": TOP_N * LENGTH - 1})
    with pytest.raises(ArtifactError, match="export --max-prompt-tokens"):
        method.validate(art, cfg.model_copy(update={"deep_prompts": narrow}))
    with pytest.raises(ArtifactError, match="prompted graphs"):
        method.validate(art, cfg.model_copy(update={"deep_prompts": None}))
    big = PromptArtifact(
        art.manifest.model_copy(update={"hparams": {"top_n": POOL + 1}}), art.tensors
    )
    with pytest.raises(ArtifactError, match="exceeds the pool"):
        method.validate(big, cfg)
    with pytest.raises(ArtifactError, match="not an L2P prompt pool"):
        torch.save({"model": {"head.weight": torch.zeros(2, 2)}}, tmp_path / "x.pth")
        import_l2p(tmp_path / "x.pth", classnames=CLASSNAMES, backbone=tiny_spec)
    with pytest.raises(ArtifactError, match="vision tower"):
        import_l2p(
            l2p_checkpoint(tmp_path / "w.pth", prompt[..., :32], key, TOP_N),
            classnames=CLASSNAMES,
            backbone=tiny_spec,
        )


# -- mocoop -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mocoop(tiny_model):
    return MoCoOpReference(tiny_model, CLASSNAMES, MOCOOP_TEMPLATES, seed=7, correction=True)


def _mocoop_artifact(ref: MoCoOpReference, tiny_spec, tmp_path) -> PromptArtifact:
    path = ref.checkpoint(tmp_path / "prompt_learner" / "model.pth.tar-5")
    art = import_mocoop(path, classnames=CLASSNAMES, backbone=tiny_spec, templates=MOCOOP_TEMPLATES)
    return PromptArtifact.load(art.save(tmp_path / "artifact"))


@pytest.mark.parametrize("engine_name", ["torch", "onnxruntime"])
def test_mocoop_matches_official_forward(
    engine_name, engines, tiny_spec, tiny_bundle, pixels, mocoop, tmp_path
):
    art = _mocoop_artifact(mocoop, tiny_spec, tmp_path)
    engine = engines[engine_name]
    head = _registered(art, engine, tiny_bundle)
    embeds = engine.encode_image(pixels)
    got = head.logits(embeds, tiny_bundle.manifest.config.logit_scale)
    want, idx, weight = mocoop(torch.from_numpy(pixels))
    index, w = head.route(embeds)
    np.testing.assert_array_equal(index, idx.numpy())
    np.testing.assert_allclose(w, weight.numpy(), atol=1e-5)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=1e-4)
    assert len({tuple(r) for r in index.tolist()}) >= 2  # the images chose differently


def test_mocoop_mixed_batch_equals_each_image_alone(
    engines, tiny_spec, tiny_bundle, pixels, mocoop, tmp_path
):
    engine = engines["onnxruntime"]
    head = _registered(_mocoop_artifact(mocoop, tiny_spec, tmp_path), engine, tiny_bundle)
    scale = tiny_bundle.manifest.config.logit_scale
    embeds = engine.encode_image(pixels)
    mixed = head.logits(embeds, scale)
    for i in range(len(pixels)):
        alone = head.logits(engine.encode_image(pixels[i : i + 1]), scale)
        np.testing.assert_allclose(mixed[i], alone[0], atol=1e-4, rtol=1e-5)


def test_mocoop_import_and_validate_errors(tiny_spec, tiny_bundle, mocoop, tmp_path):
    path = mocoop.checkpoint(tmp_path / "model.pth.tar-5")
    with pytest.raises(ArtifactError, match="4 experts but 3 templates"):
        import_mocoop(
            path, classnames=CLASSNAMES, backbone=tiny_spec, templates=MOCOOP_TEMPLATES[:3]
        )
    art = import_mocoop(path, classnames=CLASSNAMES, backbone=tiny_spec, templates=MOCOOP_TEMPLATES)
    assert "w" in art.tensors and "gate.bias" in art.tensors
    assert not any(k.startswith(("token_", "image_encoder")) for k in art.tensors)
    tensors = dict(art.tensors)
    tensors["gate.weight"] = tensors["gate.weight"][:, :10]
    with pytest.raises(ArtifactError, match=r"gate\.weight"):
        get_method("mocoop").validate(
            PromptArtifact(art.manifest, tensors), tiny_bundle.manifest.config
        )
    torch.save({"state_dict": {"prompt_learner.ctx": torch.zeros(2, 64)}}, tmp_path / "c.pth")
    with pytest.raises(ArtifactError, match="not a MoCoOp checkpoint"):
        import_mocoop(
            tmp_path / "c.pth", classnames=CLASSNAMES, backbone=tiny_spec, templates=["{}", "{}"]
        )
