"""CoCoOp against a reference written from KaiyangZhou/CoOp `trainers/cocoop.py`
(`PromptLearner`, `CustomCLIP.forward`), on checkpoints laid out as its Dassl trainer saves them."""

from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR

sys.path.insert(0, str(Path(__file__).resolve().parent))
import coop_reference as ref
from dassl_layout import dassl_importable

from promptserve.models.artifacts import ArtifactError, PromptArtifact
from promptserve.models.clip.export.importers.cocoop import import_cocoop
from promptserve.models.clip.methods import get_method
from promptserve.models.clip.runtime import ClipGraphs

CLASSNAMES = ["golden_retriever", "air conditioner", "cat", "sea anemone", "fire truck"]


class PromptLearner(nn.Module):
    """cocoop.py `PromptLearner` (CTX_INIT empty: "X X ... X" and normal(0, 0.02) context)."""

    def __init__(self, classnames, clip_model, *, n_ctx: int, seed: int = 0):
        super().__init__()
        n_cls = len(classnames)
        ctx_dim = clip_model.ln_final.weight.shape[0]
        vis_dim = clip_model.visual.output_dim
        g = torch.Generator().manual_seed(seed)
        self.ctx = nn.Parameter(torch.randn(n_ctx, ctx_dim, generator=g) * 0.02)
        prompt_prefix = " ".join(["X"] * n_ctx)
        torch.manual_seed(seed)
        self.meta_net = nn.Sequential(
            OrderedDict(
                [
                    ("linear1", nn.Linear(vis_dim, vis_dim // 16)),
                    ("relu", nn.ReLU(inplace=True)),
                    ("linear2", nn.Linear(vis_dim // 16, ctx_dim)),
                ]
            )
        )
        classnames = [name.replace("_", " ") for name in classnames]
        prompts = [prompt_prefix + " " + name + "." for name in classnames]
        tokenized_prompts = torch.cat([open_clip.tokenize(p) for p in prompts])
        with torch.no_grad():
            embedding = clip_model.token_embedding(tokenized_prompts)
        self.register_buffer("token_prefix", embedding[:, :1, :])
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx :, :])
        self.n_cls, self.n_ctx, self.tokenized_prompts = n_cls, n_ctx, tokenized_prompts

    def construct_prompts(self, ctx, prefix, suffix):
        return torch.cat([prefix, ctx, suffix], dim=1)

    def forward(self, im_features):
        prefix, suffix = self.token_prefix, self.token_suffix
        ctx = self.ctx
        bias = self.meta_net(im_features)
        bias = bias.unsqueeze(1)
        ctx = ctx.unsqueeze(0)
        ctx_shifted = ctx + bias
        prompts = []
        for ctx_shifted_i in ctx_shifted:
            ctx_i = ctx_shifted_i.unsqueeze(0).expand(self.n_cls, -1, -1)
            prompts.append(self.construct_prompts(ctx_i, prefix, suffix))
        return torch.stack(prompts)


def load_model(clip_model, trained: PromptLearner) -> PromptLearner:
    """CoOp-style `load_model`: a fresh learner (its prefix/suffix computed from the class
    names), then the saved state without `token_prefix`/`token_suffix`, strict=False. The
    weights are upcast to fp32, in which promptserve computes."""
    fresh = PromptLearner(CLASSNAMES, clip_model, n_ctx=trained.n_ctx, seed=99)
    state = {k: v.float() for k, v in trained.state_dict().items() if not k.startswith("token_")}
    fresh.load_state_dict(state, strict=False)
    return fresh


@torch.no_grad()
def reference_logits(clip_model, learner: PromptLearner, image: torch.Tensor) -> np.ndarray:
    """cocoop.py `CustomCLIP.forward` at inference (the per-image loop kept as written)."""
    text_encoder = ref.TextEncoder(clip_model)
    logit_scale = clip_model.logit_scale.exp()
    image_features = clip_model.visual(image)
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    prompts = learner(image_features)
    logits = []
    for pts_i, imf_i in zip(prompts, image_features, strict=True):
        text_features = text_encoder(pts_i, learner.tokenized_prompts)
        text_features = text_features / text_features.norm(dim=-1, keepdim=True)
        logits.append(logit_scale * imf_i @ text_features.t())
    return torch.stack(logits).numpy()


def save_cocoop_checkpoint(out: Path, learner: PromptLearner, dtype: torch.dtype) -> Path:
    learner = learner.to(dtype)  # PREC fp16 halves the meta-net and trains an fp16 context
    with dassl_importable() as mod:
        optim = torch.optim.SGD(learner.parameters(), lr=0.002, momentum=0.9)
        sched = mod.ConstantWarmupScheduler(optim, CosineAnnealingLR(optim, T_max=10), 1, 1e-5)
        path = out / "prompt_learner" / "model.pth.tar-10"
        path.parent.mkdir(parents=True)
        state = OrderedDict((k, v.detach().clone()) for k, v in learner.state_dict().items())
        torch.save(
            {"state_dict": state, "epoch": 10, "optimizer": optim.state_dict(),
             "scheduler": sched.state_dict(), "val_result": None},
            path,
        )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def engines(tiny_bundle):
    return {name: ClipGraphs.create(name, tiny_bundle) for name in ("torch", "onnxruntime")}


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return np.random.default_rng(11).standard_normal((3, 3, 224, 224)).astype(np.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("engine_name", ["torch", "onnxruntime"])
def test_cocoop_matches_official_forward(
    engine_name, dtype, engines, tiny_model, tiny_spec, tiny_bundle, pixels, tmp_path
):
    learner = PromptLearner(CLASSNAMES, tiny_model, n_ctx=4, seed=3)
    path = save_cocoop_checkpoint(tmp_path, learner, dtype)
    art = PromptArtifact.load(
        import_cocoop(path, classnames=CLASSNAMES, backbone=tiny_spec).save(tmp_path / "a")
    )
    m = tiny_bundle.manifest
    method = get_method("cocoop")
    method.validate(art, m.config)
    engine = engines[engine_name]
    head = method.make_head(art, method.class_features(art, engine.text_tower), engine.text_tower)
    assert head.dynamic
    # Small groups force several text-graph calls per batch: chunking must not change results.
    head = type(head)(**{**head.__dict__, "max_sequences": 2 * len(CLASSNAMES)})
    got = head.logits(engine.encode_image(pixels), m.config.logit_scale)
    want = reference_logits(tiny_model, load_model(tiny_model, learner), torch.from_numpy(pixels))
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_cocoop_depends_on_the_image(engines, tiny_model, tiny_spec, tiny_bundle, pixels, tmp_path):
    """The meta-net bias must reach the prompts: zeroing it changes the logits."""
    learner = PromptLearner(CLASSNAMES, tiny_model, n_ctx=4, seed=3)
    with torch.no_grad():
        learner.meta_net.linear2.weight.mul_(50)  # make the conditional part large
    path = save_cocoop_checkpoint(tmp_path, learner, torch.float32)
    art = import_cocoop(path, classnames=CLASSNAMES, backbone=tiny_spec)
    tower, engine = engines["onnxruntime"].text_tower, engines["onnxruntime"]
    head = get_method("cocoop").make_head(art, np.zeros((0, 0), np.float32), tower)
    flat = type(head)(**{**head.__dict__, "meta": tuple(np.zeros_like(w) for w in head.meta)})
    embeds = engine.encode_image(pixels)
    assert np.abs(head.logits(embeds, 10.0) - flat.logits(embeds, 10.0)).max() > 1e-3


def test_cocoop_import_and_validate_errors(tiny_model, tiny_spec, tiny_bundle, tmp_path):
    learner = PromptLearner(CLASSNAMES, tiny_model, n_ctx=4)
    path = save_cocoop_checkpoint(tmp_path, learner, torch.float32)
    art = import_cocoop(path, classnames=CLASSNAMES, backbone=tiny_spec)
    with pytest.raises(ArtifactError, match="does not fit"):
        get_method("cocoop").validate(
            art, tiny_bundle.manifest.config.model_copy(update={"text_width": 64, "embed_dim": 128})
        )
    torch.save({"state_dict": {"ctx": torch.zeros(4, 64)}}, tmp_path / "coop.pth")
    with pytest.raises(ArtifactError, match="not a CoCoOp prompt learner"):
        import_cocoop(tmp_path / "coop.pth", classnames=CLASSNAMES, backbone=tiny_spec)
