"""KgCoOp and CuPL against references written from their official code.

KgCoOp (htyao89/KgCoOp `trainers/kgcoop.py`): at inference its PromptLearner.forward is CoOp's
with the class token at the end, so the CoOp reference (`coop_reference.py`) is the reference;
the checkpoint carries extra trained keys (`bias_vectors`, `meta_net.linear1.*`) that inference
never reads. CuPL (sarahpratt/CuPL `classify_imagenet.py::zeroshot_classifier_gpt`) is written
out below.
"""

from __future__ import annotations

import json
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR

sys.path.insert(0, str(Path(__file__).resolve().parent))
import coop_reference as ref
from dassl_layout import dassl_importable

from promptserve.models.artifacts import ArtifactError, PromptArtifact
from promptserve.models.clip.export.importers.coop import import_kgcoop
from promptserve.models.clip.export.importers.cupl import import_cupl
from promptserve.models.clip.methods import get_method
from promptserve.models.clip.runtime import ClipGraphs
from promptserve.models.clip.templates import IMAGENET_80

CLASSNAMES = ["golden_retriever", "air conditioner", "cat"]


@pytest.fixture(scope="module")
def engines(tiny_bundle):
    return {name: ClipGraphs.create(name, tiny_bundle) for name in ("torch", "onnxruntime")}


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return np.random.default_rng(7).standard_normal((3, 3, 224, 224)).astype(np.float32)


def served_logits(bundle, engine, features, pixels):
    img = engine.encode_image(pixels)
    img = img / np.linalg.norm(img, axis=-1, keepdims=True)
    return bundle.manifest.config.logit_scale * img @ features.T


def save_kgcoop_checkpoint(
    out: Path, learner: torch.nn.Module, dtype: torch.dtype
) -> tuple[Path, dict]:
    """KgCoOp's prompt_learner state as its trainer saves it (Dassl save_checkpoint)."""
    learner = learner.to(dtype)
    g = torch.Generator().manual_seed(3)
    extra = OrderedDict(
        bias_vectors=(torch.randn(1, 512, generator=g) * 0.02).to(dtype),
        **{"meta_net.linear1.weight": torch.randn(512, 512, generator=g).to(dtype)},
        **{"meta_net.linear1.bias": torch.randn(512, generator=g).to(dtype)},
    )
    state_dict = OrderedDict((k, v.detach().clone()) for k, v in learner.state_dict().items())
    state_dict.update(extra)
    with dassl_importable() as mod:
        optim = torch.optim.SGD([learner.ctx], lr=0.002, momentum=0.9)
        sched = mod.ConstantWarmupScheduler(optim, CosineAnnealingLR(optim, T_max=100), 1, 1e-5)
        path = out / "prompt_learner" / "model.pth.tar-100"
        path.parent.mkdir(parents=True)
        torch.save(
            {"state_dict": state_dict, "epoch": 100, "optimizer": optim.state_dict(),
             "scheduler": sched.state_dict(), "val_result": None},
            path,
        )  # fmt: skip
    return path, state_dict


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("engine_name", ["torch", "onnxruntime"])
def test_kgcoop_matches_official_forward(
    engine_name, dtype, engines, tiny_model, tiny_spec, tiny_bundle, pixels, tmp_path
):
    learner = ref.PromptLearner(
        CLASSNAMES, tiny_model, n_ctx=4, csc=False, class_token_position="end", seed=5
    )
    path, state_dict = save_kgcoop_checkpoint(tmp_path, learner, dtype)
    art = import_kgcoop(path, classnames=CLASSNAMES, backbone=tiny_spec)
    art = PromptArtifact.load(art.save(tmp_path / "art"))
    assert art.manifest.method == "kgcoop" and art.tensors["ctx"].dtype == np.dtype(
        str(dtype).split(".")[1]
    )
    method = get_method("kgcoop")
    method.validate(art, tiny_bundle.manifest.config)
    features = method.class_features(art, engines[engine_name].text_tower)
    with torch.no_grad():
        clip = ref.CustomCLIP(
            CLASSNAMES, tiny_model, n_ctx=4, csc=False, class_token_position="end", seed=99
        )
        ref.load_prompt_learner(
            clip,
            {k: v for k, v in state_dict.items() if k in ("ctx", "token_prefix", "token_suffix")},
        )
        want = clip(torch.from_numpy(pixels)).numpy()
    np.testing.assert_allclose(
        served_logits(tiny_bundle, engines[engine_name], features, pixels),
        want,
        atol=1e-4,
        rtol=1e-4,
    )


def test_kgcoop_refuses_other_class_positions(tiny_spec, tiny_bundle, tiny_model, tmp_path):
    learner = ref.PromptLearner(
        CLASSNAMES, tiny_model, n_ctx=4, csc=False, class_token_position="end"
    )
    path, _ = save_kgcoop_checkpoint(tmp_path, learner, torch.float32)
    art = import_kgcoop(path, classnames=CLASSNAMES, backbone=tiny_spec)
    bad = PromptArtifact(
        art.manifest.model_copy(
            update={"hparams": {**art.manifest.hparams, "class_token_position": "front"}}
        ),
        art.tensors,
    )
    with pytest.raises(ArtifactError, match="end only"):
        get_method("kgcoop").validate(bad, tiny_bundle.manifest.config)


@torch.no_grad()
def cupl_reference(
    model, textnames: list[str], gpt3_prompts: dict, templates, use_both: bool
) -> torch.Tensor:
    """sarahpratt/CuPL `classify_imagenet.py::zeroshot_classifier_gpt`, as [n_cls, E]."""
    zeroshot_weights = []
    for name in textnames:
        texts = [template.format(name) for template in templates] if use_both else []
        for t in gpt3_prompts[name]:
            texts.append(t)
        texts = open_clip.tokenize(texts)  # clip.tokenize(..., truncate=True): open_clip truncates
        class_embeddings = model.encode_text(texts)
        class_embeddings /= class_embeddings.norm(dim=-1, keepdim=True)
        class_embedding = class_embeddings.mean(dim=0)
        class_embedding /= class_embedding.norm()
        zeroshot_weights.append(class_embedding)
    return torch.stack(zeroshot_weights, dim=0)


GPT_PROMPTS = {
    "tench": ["A tench is a freshwater fish with olive skin.", "A photo of a tench, a fish."],
    "goldfish": ["A small orange fish in a bowl."],
    "great white shark": [
        "A great white shark is a large predatory fish with a white underside and grey back.",
        " ".join(["A very long description of a shark in the deep blue ocean"] * 12),  # > 77 tokens
        "Sharks have rows of teeth.",
    ],
}


@pytest.mark.parametrize("variant", ["cupl", "both"])
@pytest.mark.parametrize("engine_name", ["torch", "onnxruntime"])
def test_cupl_matches_official_classifier(
    variant, engine_name, engines, tiny_model, tiny_spec, tiny_bundle, pixels, tmp_path
):
    (tmp_path / "prompts.json").write_text(json.dumps(GPT_PROMPTS))
    art = import_cupl(tmp_path / "prompts.json", backbone_id=tiny_spec.id, variant=variant)
    art = PromptArtifact.load(art.save(tmp_path / "art"))
    method = get_method("cupl")
    method.validate(art, tiny_bundle.manifest.config)
    features = method.class_features(art, engines[engine_name].text_tower)
    weights = cupl_reference(
        tiny_model, list(GPT_PROMPTS), GPT_PROMPTS, IMAGENET_80, variant == "both"
    )
    np.testing.assert_allclose(features, weights.numpy(), atol=1e-5)
    with torch.no_grad():
        want = ref.zero_shot_logits(tiny_model, torch.from_numpy(pixels), weights).numpy()
    np.testing.assert_allclose(
        served_logits(tiny_bundle, engines[engine_name], features, pixels),
        want,
        atol=1e-4,
        rtol=1e-4,
    )


def test_cupl_variants_differ_and_classnames_pick_order(tiny_spec, engines, tmp_path):
    (tmp_path / "p.json").write_text(json.dumps(GPT_PROMPTS))
    tower = engines["onnxruntime"].text_tower
    plain = get_method("cupl").class_features(
        import_cupl(tmp_path / "p.json", backbone_id=tiny_spec.id), tower
    )
    both = get_method("cupl").class_features(
        import_cupl(tmp_path / "p.json", backbone_id=tiny_spec.id, variant="both"), tower
    )
    assert np.abs(plain - both).max() > 1e-3
    picked = import_cupl(
        tmp_path / "p.json", backbone_id=tiny_spec.id, classnames=["goldfish", "tench"]
    )
    assert picked.manifest.classnames == ["goldfish", "tench"]
    np.testing.assert_allclose(
        get_method("cupl").class_features(picked, tower), plain[[1, 0]], atol=1e-6
    )


def test_cupl_import_errors(tiny_spec, tmp_path):
    (tmp_path / "p.json").write_text(json.dumps(GPT_PROMPTS))
    with pytest.raises(ArtifactError, match="no sentences for"):
        import_cupl(tmp_path / "p.json", backbone_id=tiny_spec.id, classnames=["tench", "unicorn"])
    (tmp_path / "bad.json").write_text(json.dumps({"tench": "not a list"}))
    with pytest.raises(ArtifactError, match="expected a JSON object"):
        import_cupl(tmp_path / "bad.json", backbone_id=tiny_spec.id)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ArtifactError, match="cannot read"):
        import_cupl(tmp_path / "broken.json", backbone_id=tiny_spec.id)
