"""MaPLe and PromptSRC/IVLP against references written from the official code
(tests/parity/deep_reference.py), on checkpoints laid out as the official Dassl trainers save
them: the whole CustomCLIP state dict, frozen backbone copies included, fp16 where PREC fp16
leaves tensors in fp16."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deep_checkpoints import CLASSNAMES, ivlp_checkpoint, maple_checkpoint
from deep_reference import IVLPReference, MaPLeReference

from promptserve.models.artifacts import ArtifactError, PromptArtifact
from promptserve.models.clip.deep_prompts import VisualPromptBatch
from promptserve.models.clip.export.importers.deep import import_ivlp, import_maple
from promptserve.models.clip.methods import get_method
from promptserve.models.clip.runtime import ClipGraphs


@pytest.fixture(scope="module")
def engines(tiny_bundle):
    return {name: ClipGraphs.create(name, tiny_bundle) for name in ("torch", "onnxruntime")}


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return np.random.default_rng(5).standard_normal((3, 3, 224, 224)).astype(np.float32)


def _serve_logits(art: PromptArtifact, engine, bundle, pixels: np.ndarray) -> np.ndarray:
    """Registration (validate + class features) and one request, as a replica does them."""
    method = get_method(art.manifest.method)
    m = bundle.manifest
    method.validate(art, m.config)
    tower = engine.text_tower
    head = method.make_head(art, method.class_features(art, tower), tower)
    slots = m.config.deep_prompts
    batch = VisualPromptBatch.stack(
        [head.visual] * len(pixels), layers=slots.vision_layers, width=slots.vision_width
    )
    return head.logits(engine.encode_image(pixels, batch), m.config.logit_scale)


MAPLE_CASES = {
    # the official config (CTX_INIT "a photo of a", 2 tokens, depth past the tiny tower's 3
    # layers is not possible here, so full depth), shallow MaPLe, and random init
    "official-fp16": dict(n_ctx=2, depth=3, ctx_init="a photo of a", fp16=True),
    "fp32-depth2": dict(n_ctx=2, depth=2, ctx_init="a photo of a", fp16=False),
    "shallow": dict(n_ctx=3, depth=1, ctx_init="a photo of a", fp16=True),
    "random-init-8ctx": dict(n_ctx=8, depth=2, ctx_init="a photo of a", fp16=False),
}


@pytest.mark.parametrize("case", list(MAPLE_CASES))
@pytest.mark.parametrize("engine_name", ["torch", "onnxruntime"])
def test_maple_matches_official_forward(
    case, engine_name, engines, tiny_model, tiny_spec, tiny_bundle, pixels, tmp_path
):
    cfg = MAPLE_CASES[case]
    path, learner = maple_checkpoint(tmp_path, tiny_model, **cfg)
    art = import_maple(path, classnames=CLASSNAMES, backbone=tiny_spec, ctx_init=cfg["ctx_init"])
    art = PromptArtifact.load(art.save(tmp_path / "artifact"))
    got = _serve_logits(art, engines[engine_name], tiny_bundle, pixels)
    want = MaPLeReference(tiny_model, CLASSNAMES, learner, cfg["ctx_init"])(
        torch.from_numpy(pixels)
    ).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


IVLP_CASES = {
    "promptsrc-fp16": dict(n_text=4, n_vision=4, depth_text=3, depth_vision=3, fp16=True),
    "unequal-depths": dict(n_text=2, n_vision=5, depth_text=2, depth_vision=3, fp16=False),
    "shallow-vision": dict(n_text=4, n_vision=3, depth_text=3, depth_vision=1, fp16=True),
}


@pytest.mark.parametrize("case", list(IVLP_CASES))
@pytest.mark.parametrize("engine_name", ["torch", "onnxruntime"])
def test_ivlp_matches_official_forward(
    case, engine_name, engines, tiny_model, tiny_spec, tiny_bundle, pixels, tmp_path
):
    cfg = IVLP_CASES[case]
    path, prompts = ivlp_checkpoint(tmp_path, tiny_model, ctx_init="a photo of a", **cfg)
    art = import_ivlp(path, classnames=CLASSNAMES, backbone=tiny_spec)
    assert art.manifest.method == "ivlp"
    got = _serve_logits(art, engines[engine_name], tiny_bundle, pixels)
    want = IVLPReference(tiny_model, CLASSNAMES, prompts, "a photo of a")(
        torch.from_numpy(pixels)
    ).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_deep_prompts_change_the_result(
    engines, tiny_model, tiny_spec, tiny_bundle, pixels, tmp_path
):
    """The parity above would also hold if the deep layers were ignored on both sides:
    check that the deep prompts and the fp16 rounding reach the logits."""
    path, learner = maple_checkpoint(
        tmp_path, tiny_model, n_ctx=2, depth=3, ctx_init="a photo of a", fp16=False
    )
    art = import_maple(path, classnames=CLASSNAMES, backbone=tiny_spec)
    full = _serve_logits(art, engines["onnxruntime"], tiny_bundle, pixels)
    shallow = {k: v for k, v in learner.items() if not k.startswith("compound")}
    want_shallow = MaPLeReference(tiny_model, CLASSNAMES, shallow, "a photo of a")(
        torch.from_numpy(pixels)
    ).numpy()
    assert np.abs(full - want_shallow).max() > 1e-3


def test_promptsrc_teacher_is_dropped(tiny_model, tiny_spec, tmp_path):
    cfg = IVLP_CASES["promptsrc-fp16"]
    path, _ = ivlp_checkpoint(tmp_path, tiny_model, ctx_init="a photo of a", **cfg)
    art = import_ivlp(path, classnames=CLASSNAMES, backbone=tiny_spec)
    assert set(art.tensors) == {"text_prompts", "vision_prompts"}
    assert art.tensors["text_prompts"].shape[:2] == (3, 4)
    assert art.tensors["vision_prompts"].shape[:2] == (3, 4)


def test_deep_import_and_validate_errors(tiny_model, tiny_spec, tiny_bundle, tmp_path):
    path, _ = maple_checkpoint(tmp_path, tiny_model, n_ctx=2, depth=3, ctx_init="", fp16=True)
    with pytest.raises(ArtifactError, match="not a PromptSRC/IVLP checkpoint"):
        import_ivlp(path, classnames=CLASSNAMES, backbone=tiny_spec)
    art = import_maple(path, classnames=CLASSNAMES, backbone=tiny_spec)
    m = tiny_bundle.manifest
    with pytest.raises(ArtifactError, match="prompted graphs"):
        get_method("maple").validate(art, m.config.model_copy(update={"deep_prompts": None}))
    small = m.config.deep_prompts.model_copy(update={"vision_layers": 2})
    with pytest.raises(ArtifactError, match=r"depth 3 is outside 1\.\.2"):
        get_method("maple").validate(art, m.config.model_copy(update={"deep_prompts": small}))
    narrow = m.config.deep_prompts.model_copy(update={"max_tokens": 1})
    with pytest.raises(ArtifactError, match="at most 1"):
        get_method("maple").validate(art, m.config.model_copy(update={"deep_prompts": narrow}))
    torch.save({"state_dict": {"prompt_learner.ctx": torch.zeros(2, 64)}}, tmp_path / "x.pth")
    with pytest.raises(ArtifactError, match="not a MaPLe checkpoint"):
        import_maple(tmp_path / "x.pth", classnames=CLASSNAMES, backbone=tiny_spec)
    gap = {
        "prompt_learner.ctx": torch.zeros(2, m.config.text_width),
        "image_encoder.VPT": torch.zeros(2, m.config.deep_prompts.vision_width),
        "image_encoder.transformer.resblocks.2.VPT_shallow": torch.zeros(2, 64),
    }
    torch.save({"state_dict": gap}, tmp_path / "gap.pth")
    with pytest.raises(ArtifactError, match="should run from 1 without gaps"):
        import_ivlp(tmp_path / "gap.pth", classnames=CLASSNAMES, backbone=tiny_spec)


@pytest.mark.parametrize("engine_name", ["torch", "onnxruntime"])
def test_mixed_deep_prompt_batch_equals_per_artifact_runs(
    engine_name, engines, tiny_model, tiny_spec, tiny_bundle, tmp_path
):
    """One prompted-graph call over rows of a MaPLe artifact (2 tokens, depth 3), an IVLP
    artifact (5 vision tokens, depth 2) and plain CLIP rows equals each artifact alone and the
    plain graph: padding and masking leave every row's computation unchanged."""
    engine = engines[engine_name]
    slots = tiny_bundle.manifest.config.deep_prompts
    maple_path, _ = maple_checkpoint(
        tmp_path / "m", tiny_model, n_ctx=2, depth=3, ctx_init="a photo of a", fp16=True
    )
    ivlp_path, _ = ivlp_checkpoint(
        tmp_path / "i", tiny_model, n_text=4, n_vision=5, depth_text=3, depth_vision=2,
        ctx_init="a photo of a", fp16=False,
    )  # fmt: skip
    maple = get_method("maple").visual_prompts(
        import_maple(maple_path, classnames=CLASSNAMES, backbone=tiny_spec)
    )
    ivlp = get_method("ivlp").visual_prompts(
        import_ivlp(ivlp_path, classnames=CLASSNAMES, backbone=tiny_spec)
    )
    pixels = np.random.default_rng(9).standard_normal((6, 3, 224, 224)).astype(np.float32)
    rows = [maple, None, ivlp, maple, None, ivlp]

    def run(idx, prompts):
        batch = VisualPromptBatch.stack(
            prompts, layers=slots.vision_layers, width=slots.vision_width
        )
        return engine.encode_image(pixels[idx], batch)

    mixed = run(list(range(6)), rows)
    np.testing.assert_allclose(mixed[[0, 3]], run([0, 3], [maple, maple]), atol=1e-5)
    np.testing.assert_allclose(mixed[[2, 5]], run([2, 5], [ivlp, ivlp]), atol=1e-5)
    np.testing.assert_allclose(mixed[[1, 4]], engine.encode_image(pixels[[1, 4]]), atol=1e-5)
    # and the prompts do act: a deep-prompt row differs from its plain embedding
    assert np.abs(mixed[0] - engine.encode_image(pixels[[0]])[0]).max() > 1e-3
