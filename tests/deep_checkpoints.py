"""Checkpoints laid out as the official MaPLe and PromptSRC/IVLP Dassl trainers save them, with
seeded values standing in for trained prompts (shared by the parity and serving tests)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import open_clip
import torch
from dassl_layout import dassl_importable
from torch.optim.lr_scheduler import CosineAnnealingLR

CLASSNAMES = ["golden_retriever", "air conditioner", "cat", "sea anemone", "fire truck"]


def _dims(model) -> tuple[int, int, int, int]:
    """text width, vision width, text layers, vision layers."""
    return (
        model.ln_final.weight.shape[0],
        model.visual.conv1.weight.shape[0],
        len(model.transformer.resblocks),
        len(model.visual.transformer.resblocks),
    )


def _init_ctx(model, ctx_init: str, n_ctx: int, g) -> torch.Tensor:
    """The prompt learners' initialisation (CTX_INIT words, else normal(0, 0.02)), then a
    perturbation standing in for training."""
    d = model.ln_final.weight.shape[0]
    if ctx_init and n_ctx <= 4:
        with torch.no_grad():
            base = model.token_embedding(open_clip.tokenize(ctx_init))[0, 1 : 1 + n_ctx]
    else:
        base = torch.zeros(n_ctx, d)
    return base + 0.02 * torch.randn(n_ctx, d, generator=g)


def _backbone_copies(model, dtype) -> dict[str, torch.Tensor]:
    """The frozen towers the trainers' state dicts also hold (convert_weights halves them)."""
    out = {f"image_encoder.{k}": v.to(dtype) for k, v in model.visual.state_dict().items()}
    out.update(
        {
            f"text_encoder.transformer.{k}": v.to(dtype)
            for k, v in model.transformer.state_dict().items()
        }
    )
    out["logit_scale"] = model.logit_scale.detach().clone()
    return out


def _save_dassl(path: Path, state: dict[str, torch.Tensor], epoch: int) -> Path:
    """Dassl `save_checkpoint`: {state_dict, epoch, optimizer, scheduler, val_result}."""
    params = [torch.nn.Parameter(v.float()) for k, v in state.items() if "ctx" in k]
    with dassl_importable() as mod:
        optim = torch.optim.SGD(params, lr=0.0035, momentum=0.9)
        sched = mod.ConstantWarmupScheduler(optim, CosineAnnealingLR(optim, T_max=5), 1, 1e-5)
        path.parent.mkdir(parents=True)
        torch.save(
            {"state_dict": OrderedDict(state), "epoch": epoch, "optimizer": optim.state_dict(),
             "scheduler": sched.state_dict(), "val_result": None},
            path,
        )  # fmt: skip
    return path


def maple_checkpoint(
    out: Path, model, *, n_ctx: int, depth: int, ctx_init: str, fp16: bool, seed: int = 0
) -> tuple[Path, dict[str, torch.Tensor]]:
    """trainers/maple.py registers the whole CustomCLIP as "MultiModalPromptLearner"; with
    PREC fp16 `ctx` (embedding dtype) and `proj` (`.half()`) are fp16, the compound prompts
    and their projections fp32."""
    g = torch.Generator().manual_seed(seed)
    d, w, _, _ = _dims(model)
    half = torch.float16 if fp16 else torch.float32
    learner = {
        "ctx": _init_ctx(model, ctx_init, n_ctx, g).to(half),
        "proj.weight": (0.1 * torch.randn(w, d, generator=g)).to(half),
        "proj.bias": (0.02 * torch.randn(w, generator=g)).to(half),
    }
    for i in range(depth - 1):
        learner[f"compound_prompts_text.{i}"] = 0.02 * torch.randn(n_ctx, d, generator=g)
        learner[f"compound_prompt_projections.{i}.weight"] = 0.1 * torch.randn(w, d, generator=g)
        learner[f"compound_prompt_projections.{i}.bias"] = 0.02 * torch.randn(w, generator=g)
    buffers = {
        "token_prefix": torch.zeros(len(CLASSNAMES), 1, d, dtype=half),
        "token_suffix": torch.zeros(len(CLASSNAMES), 76 - n_ctx, d, dtype=half),
    }
    state = {f"prompt_learner.{k}": v for k, v in {**learner, **buffers}.items()}
    state |= _backbone_copies(model, half)
    path = _save_dassl(out / "MultiModalPromptLearner" / "model.pth.tar-5", state, 5)
    return path, learner


def ivlp_checkpoint(
    out: Path, model, *, n_text: int, n_vision: int, depth_text: int, depth_vision: int,
    ctx_init: str, fp16: bool, seed: int = 0, teacher: bool = True,
) -> tuple[Path, dict[str, torch.Tensor]]:  # fmt: skip
    """trainers/promptsrc.py registers the whole CustomCLIP as "VLPromptLearner": `ctx` in the
    model dtype, VPT/VPT_shallow fp32 (convert_weights skips them), the frozen teacher
    `prompt_learner.ZS_image_encoder.*` included."""
    g = torch.Generator().manual_seed(seed)
    d, w, _, _ = _dims(model)
    half = torch.float16 if fp16 else torch.float32
    state = {
        "prompt_learner.ctx": _init_ctx(model, ctx_init, n_text, g).to(half),
        "image_encoder.VPT": 0.02 * torch.randn(n_vision, w, generator=g),
    }
    for i in range(1, depth_text):
        key = f"text_encoder.transformer.resblocks.{i}.VPT_shallow"
        state[key] = 0.02 * torch.randn(n_text, d, generator=g)
    for i in range(1, depth_vision):
        key = f"image_encoder.transformer.resblocks.{i}.VPT_shallow"
        state[key] = 0.02 * torch.randn(n_vision, w, generator=g)
    prompts = dict(state)
    state |= _backbone_copies(model, half)
    if teacher:
        state |= {
            f"prompt_learner.ZS_image_encoder.{k}": v.to(half)
            for k, v in model.visual.state_dict().items()
        }
    path = _save_dassl(out / "VLPromptLearner" / "model.pth.tar-20", state, 20)
    return path, prompts
