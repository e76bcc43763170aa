"""Parity of promptserve's CoOp and template-ensemble heads with independent references.

Pipeline under test, for each engine (eager torch and ONNX Runtime on the exported bundle):
an official-layout CoOp checkpoint (Dassl `save_checkpoint`) -> `import_coop` -> artifact
saved and reloaded through safetensors -> `CoOpMethod.validate` / `class_features` ->
`logit_scale * normalize(encode_image(pixels)) @ features.T`.

Expected logits come from `coop_reference.py`, a transcription of KaiyangZhou/CoOp
`trainers/coop.py` (and openai/CLIP's zero-shot notebook) run on the same tiny open_clip model
with torch. promptserve computes in fp32 whatever the checkpoint's dtype, so the reference loads
fp16 contexts upcast to fp32, as the official `load_model` does into an fp32 model.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("onnxruntime")

from torch.optim.lr_scheduler import CosineAnnealingLR  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import coop_reference as ref  # noqa: E402
from dassl_layout import dassl_importable  # noqa: E402

from promptserve.models.artifacts import ArtifactError, PromptArtifact  # noqa: E402
from promptserve.models.clip.export.importers.coop import import_coop  # noqa: E402
from promptserve.models.clip.export.importers.templates import build_templates  # noqa: E402
from promptserve.models.clip.methods.coop import CoOpMethod  # noqa: E402
from promptserve.models.clip.methods.templates import TemplatesMethod  # noqa: E402
from promptserve.models.clip.runtime import ClipGraphs  # noqa: E402

ATOL = RTOL = 1e-4
ENGINES = ("torch", "onnxruntime")
# Underscored and multi-token names: "golden_retriever" -> "golden retriever" (2 BPE tokens).
CLASSNAMES = ["golden_retriever", "air conditioner", "cat", "sea anemone"]


# -- official checkpoint layout ------------------------------------------------------------------
def save_official_checkpoint(
    output_dir: Path, learner: torch.nn.Module, *, dtype: torch.dtype, epoch: int = 50
) -> tuple[Path, OrderedDict]:
    """What CoOp's trainer writes for its `prompt_learner` (Dassl `SimpleTrainer.save_model` ->
    `save_checkpoint`): {"state_dict", "epoch", "optimizer", "scheduler", "val_result"} at
    `<output_dir>/prompt_learner/model.pth.tar-<epoch>`. `dtype` is the training precision
    (CoOp's default PREC is fp16, which trains the learner in fp16)."""
    learner = learner.to(dtype)
    with dassl_importable() as mod:  # pickle looks classes up by module name
        # CoOp OPTIM: sgd, lr 0.002, cosine over MAX_EPOCH, 1 constant warmup epoch at 1e-5.
        optim = torch.optim.SGD([learner.ctx], lr=0.002, momentum=0.9, weight_decay=5e-4)
        sched = mod.ConstantWarmupScheduler(optim, CosineAnnealingLR(optim, T_max=epoch), 1, 1e-5)
        # One training step, so the optimizer state holds momentum buffers as a real run's does.
        grad = torch.randn(learner.ctx.shape, generator=torch.Generator().manual_seed(epoch))
        learner.ctx.grad = grad.to(dtype)
        optim.step()
        sched.step()
        state_dict = OrderedDict((k, v.detach().clone()) for k, v in learner.state_dict().items())
        path = output_dir / "prompt_learner" / f"model.pth.tar-{epoch}"
        path.parent.mkdir(parents=True)
        state = {
            "state_dict": state_dict,
            "epoch": epoch,
            "optimizer": optim.state_dict(),
            "scheduler": sched.state_dict(),
            "val_result": None,
        }
        torch.save(state, path)
    return path, state_dict


# -- fixtures and helpers ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engines(tiny_bundle):
    return {name: ClipGraphs.create(name, tiny_bundle) for name in ENGINES}


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return np.random.default_rng(1234).standard_normal((4, 3, 224, 224)).astype(np.float32)


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def served_logits(bundle, engine, features: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    return bundle.manifest.config.logit_scale * _normalize(engine.encode_image(pixels)) @ features.T


@torch.no_grad()
def reference_coop_logits(
    model, classnames, state_dict, pixels, *, n_ctx, csc, position
) -> np.ndarray:
    clip = ref.CustomCLIP(
        classnames, model, n_ctx=n_ctx, csc=csc, class_token_position=position, seed=99
    )
    ref.load_prompt_learner(clip, state_dict)
    return clip(torch.from_numpy(pixels)).numpy()


def _learner(model, classnames, *, n_ctx, csc, seed=0):
    # class_token_position does not change what the learner saves (ctx, prefix, suffix).
    return ref.PromptLearner(
        classnames, model, n_ctx=n_ctx, csc=csc, class_token_position="end", seed=seed
    )


def _roundtrip(artifact: PromptArtifact, directory: Path) -> PromptArtifact:
    artifact.save(directory)
    return PromptArtifact.load(directory)


# -- CoOp parity ---------------------------------------------------------------------------------
@pytest.mark.parametrize("engine_name", ENGINES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("csc", [False, True], ids=["unified", "csc"])
@pytest.mark.parametrize("position", ["end", "middle", "front"])
@pytest.mark.parametrize("n_ctx", [4, 5])
def test_coop_logits_match_official_forward(
    tiny_spec, tiny_model, tiny_bundle, engines, pixels, tmp_path, record_property,
    engine_name, dtype, csc, position, n_ctx,
):  # fmt: skip
    learner = _learner(tiny_model, CLASSNAMES, n_ctx=n_ctx, csc=csc)
    path, saved = save_official_checkpoint(tmp_path / "run", learner, dtype=dtype)
    # The checkpoint holds what the official PromptLearner registers, at its shapes.
    width = tiny_model.ln_final.weight.shape[0]
    ctx_shape = (len(CLASSNAMES), n_ctx, width) if csc else (n_ctx, width)
    assert tuple(saved["ctx"].shape) == ctx_shape and saved["ctx"].dtype == dtype
    assert tuple(saved["token_prefix"].shape) == (len(CLASSNAMES), 1, width)
    assert tuple(saved["token_suffix"].shape) == (len(CLASSNAMES), 77 - 1 - n_ctx, width)

    imported = import_coop(
        path, classnames=CLASSNAMES, backbone=tiny_spec, class_token_position=position
    )
    artifact = _roundtrip(imported, tmp_path / "artifact")
    assert artifact.manifest.classnames == CLASSNAMES
    assert artifact.manifest.hparams == {
        "n_ctx": n_ctx,
        "csc": csc,
        "class_token_position": position,
    }
    ctx = artifact.tensors["ctx"]
    assert ctx.dtype == saved["ctx"].numpy().dtype
    np.testing.assert_array_equal(ctx, saved["ctx"].numpy())

    CoOpMethod.validate(artifact, tiny_bundle.manifest.config)
    engine = engines[engine_name]
    features = CoOpMethod.class_features(artifact, engine.text_tower)
    got = served_logits(tiny_bundle, engine, features, pixels)

    want = reference_coop_logits(
        tiny_model, CLASSNAMES, saved, pixels, n_ctx=n_ctx, csc=csc, position=position
    )
    assert got.shape == want.shape == (len(pixels), len(CLASSNAMES))
    record_property("max_abs_diff", float(np.abs(got - want).max()))
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("engine_name", ENGINES)
def test_coop_rebuilds_prefix_suffix_from_given_classnames(
    tiny_spec, tiny_model, tiny_bundle, engines, pixels, tmp_path, engine_name
):
    """Base-to-new: the checkpoint's token_prefix/suffix belong to the training classes and are
    ignored (as the official load_model does); prompts are built for the classes given."""
    trained_on = ["dog", "truck", "tench", "ox"]
    learner = _learner(tiny_model, trained_on, n_ctx=4, csc=False, seed=7)
    path, saved = save_official_checkpoint(tmp_path / "run", learner, dtype=torch.float32)
    artifact = _roundtrip(
        import_coop(path, classnames=CLASSNAMES, backbone=tiny_spec, class_token_position="middle"),
        tmp_path / "artifact",
    )
    engine = engines[engine_name]
    got = served_logits(
        tiny_bundle, engine, CoOpMethod.class_features(artifact, engine.text_tower), pixels
    )
    want = reference_coop_logits(
        tiny_model, CLASSNAMES, saved, pixels, n_ctx=4, csc=False, position="middle"
    )
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)
    stale = reference_coop_logits(
        tiny_model, trained_on, saved, pixels, n_ctx=4, csc=False, position="middle"
    )
    assert np.abs(got - stale).max() > 100 * ATOL


# -- the comparison can fail -------------------------------------------------------------------
@torch.no_grad()
def test_reference_is_sensitive_to_position_and_ctx(tiny_model, tiny_bundle, pixels, tmp_path):
    learner = _learner(tiny_model, CLASSNAMES, n_ctx=5, csc=True)
    _, saved = save_official_checkpoint(tmp_path / "run", learner, dtype=torch.float32)
    kw = {"n_ctx": 5, "csc": True}
    by_position = {
        pos: reference_coop_logits(tiny_model, CLASSNAMES, saved, pixels, position=pos, **kw)
        for pos in ("end", "middle", "front")
    }
    for a, b in [("end", "middle"), ("end", "front"), ("middle", "front")]:
        assert np.abs(by_position[a] - by_position[b]).max() > 100 * ATOL, (a, b)

    # One class's context nudged (std 0.02, the init scale): that class's column moves.
    nudged = OrderedDict(saved)
    ctx = saved["ctx"].clone()
    ctx[2] += 0.02 * torch.randn(ctx[2].shape, generator=torch.Generator().manual_seed(5))
    nudged["ctx"] = ctx
    moved = reference_coop_logits(tiny_model, CLASSNAMES, nudged, pixels, position="end", **kw)
    diff = np.abs(moved - by_position["end"])
    assert diff[:, 2].max() > 10 * ATOL
    np.testing.assert_array_equal(diff[:, [0, 1, 3]], 0)  # class-specific: others untouched

    # The tolerance is far below the logits' own scale (logit_scale ~ 14.3 on cosines).
    assert np.abs(by_position["end"]).max() > 1e4 * ATOL
    assert tiny_bundle.manifest.config.logit_scale == pytest.approx(
        float(tiny_model.logit_scale.exp())
    )


def test_parity_check_rejects_wrong_position_or_class_order(
    tiny_spec, tiny_model, tiny_bundle, engines, pixels, tmp_path
):
    learner = _learner(tiny_model, CLASSNAMES, n_ctx=4, csc=True)
    path, saved = save_official_checkpoint(tmp_path / "run", learner, dtype=torch.float32)
    engine = engines["onnxruntime"]
    want = reference_coop_logits(
        tiny_model, CLASSNAMES, saved, pixels, n_ctx=4, csc=True, position="end"
    )

    wrong_pos = import_coop(
        path, classnames=CLASSNAMES, backbone=tiny_spec, class_token_position="front"
    )
    got = served_logits(
        tiny_bundle, engine, CoOpMethod.class_features(wrong_pos, engine.text_tower), pixels
    )
    assert not np.allclose(got, want, atol=ATOL, rtol=RTOL)

    # CSC contexts are bound to training order: a permuted class list pairs names with the
    # wrong contexts, which must not pass for the right logits permuted.
    perm = [1, 0, 3, 2]
    shuffled = import_coop(
        path, classnames=[CLASSNAMES[i] for i in perm], backbone=tiny_spec,
        class_token_position="end",
    )  # fmt: skip
    got = served_logits(
        tiny_bundle, engine, CoOpMethod.class_features(shuffled, engine.text_tower), pixels
    )
    assert not np.allclose(got, want[:, perm], atol=ATOL, rtol=RTOL)


# -- importer / validation errors ----------------------------------------------------------------
def test_import_csc_class_count_mismatch(tiny_spec, tiny_model, tmp_path):
    learner = _learner(tiny_model, CLASSNAMES, n_ctx=4, csc=True)
    path, _ = save_official_checkpoint(tmp_path / "run", learner, dtype=torch.float16)
    with pytest.raises(
        ArtifactError, match=r"class-specific context holds 4 classes but 3 class names"
    ) as err:
        import_coop(path, classnames=CLASSNAMES[:3], backbone=tiny_spec)
    assert "training order" in str(err.value)


def test_import_wrong_context_width(tiny_spec, tmp_path):
    """A checkpoint trained on a backbone of another text width (32 here, tiny is 64)."""
    g = torch.Generator().manual_seed(3)
    learner = torch.nn.Module()
    learner.ctx = torch.nn.Parameter(torch.empty(4, 32).normal_(std=0.02, generator=g))
    learner.register_buffer("token_prefix", torch.randn(4, 1, 32, generator=g))
    learner.register_buffer("token_suffix", torch.randn(4, 72, 32, generator=g))
    path, _ = save_official_checkpoint(tmp_path / "run", learner, dtype=torch.float32)
    with pytest.raises(ArtifactError, match=r"context width 32 does not match .*text width 64"):
        import_coop(path, classnames=CLASSNAMES, backbone=tiny_spec)


def test_import_checkpoint_without_ctx(tiny_spec, tmp_path):
    path = tmp_path / "model.pth.tar-1"
    torch.save({"state_dict": {"weight": torch.zeros(2)}, "epoch": 1}, path)
    with pytest.raises(ArtifactError, match=r"no context vectors"):
        import_coop(path, classnames=CLASSNAMES, backbone=tiny_spec)


def test_validate_rejects_ctx_for_another_width_or_class_count(
    tiny_spec, tiny_model, tiny_bundle, tmp_path
):
    learner = _learner(tiny_model, CLASSNAMES, n_ctx=4, csc=True)
    path, _ = save_official_checkpoint(tmp_path / "run", learner, dtype=torch.float32)
    artifact = import_coop(path, classnames=CLASSNAMES, backbone=tiny_spec)
    with pytest.raises(ArtifactError, match=r"needs tensor `ctx` of shape \(4, 4, 128\)"):
        CoOpMethod.validate(
            artifact, tiny_bundle.manifest.config.model_copy(update={"text_width": 128})
        )
    fewer = PromptArtifact(
        artifact.manifest.model_copy(update={"classnames": CLASSNAMES[:3]}), artifact.tensors
    )
    with pytest.raises(ArtifactError, match=r"got \(4, 4, 64\)"):
        CoOpMethod.validate(fewer, tiny_bundle.manifest.config)


# -- template ensemble ---------------------------------------------------------------------------
def test_imagenet80_preset_is_the_notebook_list(tiny_spec):
    artifact = build_templates(CLASSNAMES, backbone_id=tiny_spec.id, templates="imagenet80")
    assert artifact.manifest.templates == list(ref.IMAGENET_TEMPLATES)
    assert len(ref.IMAGENET_TEMPLATES) == 80


TEMPLATE_SETS = {
    "imagenet80": ("imagenet80", ref.IMAGENET_TEMPLATES),
    "two": (["itap of a {}.", "a {} in a video game."], ["itap of a {}.", "a {} in a video game."]),
}


@pytest.fixture(scope="module")
def zeroshot_reference(tiny_model, pixels):
    """Reference logits per template set, computed once (80 templates x 4 classes)."""
    out = {}
    for key, (_, templates) in TEMPLATE_SETS.items():
        weights = ref.zeroshot_classifier(tiny_model, CLASSNAMES, templates)
        out[key] = ref.zero_shot_logits(tiny_model, torch.from_numpy(pixels), weights).numpy()
    return out


@pytest.mark.parametrize("engine_name", ENGINES)
@pytest.mark.parametrize("template_set", TEMPLATE_SETS)
def test_templates_logits_match_clip_zeroshot_classifier(
    tiny_spec, tiny_bundle, engines, pixels, zeroshot_reference, tmp_path, record_property,
    engine_name, template_set,
):  # fmt: skip
    spec_arg, _ = TEMPLATE_SETS[template_set]
    artifact = _roundtrip(
        build_templates(CLASSNAMES, backbone_id=tiny_spec.id, templates=spec_arg),
        tmp_path / "artifact",
    )
    TemplatesMethod.validate(artifact, tiny_bundle.manifest.config)
    engine = engines[engine_name]
    features = TemplatesMethod.class_features(artifact, engine.text_tower)
    got = served_logits(tiny_bundle, engine, features, pixels)
    want = zeroshot_reference[template_set]
    record_property("max_abs_diff", float(np.abs(got - want).max()))
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)


def test_template_sets_give_different_logits(zeroshot_reference):
    a, b = zeroshot_reference["imagenet80"], zeroshot_reference["two"]
    assert np.abs(a - b).max() > 100 * ATOL
