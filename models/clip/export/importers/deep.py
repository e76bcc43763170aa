"""Import MaPLe and PromptSRC/IVLP checkpoints saved by the official trainers (Dassl).

Both trainers register the *whole* CustomCLIP with Dassl (`register_model("MultiModalPromptLearner"
| "VLPromptLearner", self.model, ...)`), so `model.pth.tar-N` holds the frozen backbone too;
only the learned prompt tensors are kept. fp16 tensors (PREC fp16, the official default) are
kept as fp16 in the artifact and cast to fp32 where they are used.

- MaPLe (muzairkhattak/multimodal-prompt-learning `trainers/maple.py`): `prompt_learner.ctx`,
  `prompt_learner.proj.*`, `prompt_learner.compound_prompts_text.{i}`,
  `prompt_learner.compound_prompt_projections.{i}.*`.
- PromptSRC (muzairkhattak/PromptSRC `trainers/promptsrc.py`) and IVLP
  (`trainers/independentVL.py`): `prompt_learner.ctx`, `image_encoder.VPT`,
  `{image,text}_encoder.transformer.resblocks.{i}.VPT_shallow`; PromptSRC's frozen teacher
  `prompt_learner.ZS_image_encoder.*` is dropped.

The context initialisation text (CTX_INIT) is not in the checkpoint; pass the training config's
(the official configs use "a photo of a").
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from promptserve.exporters.checkpoints import extract_state_dict, load_checkpoint
from promptserve.models.artifacts import ArtifactError, PromptArtifact
from promptserve.models.clip.artifacts import ClipArtifactManifest
from promptserve.models.clip.backbone import BackboneSpec
from promptserve.models.clip.export.importers import checkpoint_source, to_numpy
from promptserve.models.clip.methods.deep import IVLPMethod, MaPLeMethod, official_prefix

DEFAULT_CTX_INIT = "a photo of a"


def _indexed(state: dict, pattern: str, first: int) -> list:
    """Values whose key matches `pattern` (one `(\\d+)` group) in index order; the indices must
    run first, first+1, ... without gaps, as the trainers create them."""
    found = {int(m.group(1)): v for k, v in state.items() if (m := re.fullmatch(pattern, k))}
    if sorted(found) != list(range(first, first + len(found))):
        raise ArtifactError(
            f"prompt layers {sorted(found)} of {pattern!r} should run from {first} without gaps"
        )
    return [found[i] for i in sorted(found)]


def _stack(tensors: list, shape_tail: tuple[int, ...]) -> np.ndarray:
    if not tensors:
        return np.zeros((0, *shape_tail), np.float32)
    return np.stack([to_numpy(t) for t in tensors])


def _load(checkpoint: str | Path) -> tuple[dict, dict]:
    ckpt = load_checkpoint(checkpoint)
    return ckpt, extract_state_dict(ckpt)


def _manifest(method: str, checkpoint, ckpt, backbone, classnames, prefix) -> ClipArtifactManifest:
    return ClipArtifactManifest(
        method=method,
        backbone=backbone.id,
        classnames=list(classnames),
        hparams={"prompt_prefix": prefix},
        source=checkpoint_source(checkpoint, ckpt),
    )


def _check_width(ctx, backbone: BackboneSpec) -> None:
    if ctx.ndim != 2:
        raise ArtifactError(f"`ctx` should be [n_ctx, D]; got {tuple(ctx.shape)}")
    if ctx.shape[-1] != backbone.text_width():
        raise ArtifactError(
            f"context width {ctx.shape[-1]} does not match {backbone.arch}'s text width "
            f"{backbone.text_width()}; was it trained on another CLIP backbone?"
        )


def import_maple(
    checkpoint: str | Path,
    *,
    classnames: list[str],
    backbone: BackboneSpec,
    ctx_init: str = DEFAULT_CTX_INIT,
) -> PromptArtifact:
    """Example:
    >>> import_maple("output/.../MultiModalPromptLearner/model.pth.tar-5", classnames=names,
    ...              backbone=BackboneSpec.parse("ViT-B-16:openai")).save("artifacts/maple")
    """
    ckpt, state = _load(checkpoint)
    pl = {
        k.removeprefix("prompt_learner."): v
        for k, v in state.items()
        if k.startswith("prompt_learner.")
    }
    missing = [k for k in ("ctx", "proj.weight", "proj.bias") if k not in pl]
    if missing:
        raise ArtifactError(
            f"{checkpoint} is not a MaPLe checkpoint: missing prompt_learner.{missing[0]} "
            f"(keys: {sorted(state)[:8]})"
        )
    ctx = pl["ctx"]
    _check_width(ctx, backbone)
    n_ctx, width = ctx.shape
    text = _indexed(pl, r"compound_prompts_text\.(\d+)", 0)
    weights = _indexed(pl, r"compound_prompt_projections\.(\d+)\.weight", 0)
    biases = _indexed(pl, r"compound_prompt_projections\.(\d+)\.bias", 0)
    if not len(text) == len(weights) == len(biases):
        raise ArtifactError(
            f"{len(text)} compound text prompts but {len(weights)} projections in {checkpoint}"
        )
    vision_width = pl["proj.weight"].shape[0]
    tensors = {
        "ctx": to_numpy(ctx),
        "compound_prompts_text": _stack(text, (n_ctx, width)),
        "proj.weight": to_numpy(pl["proj.weight"]),
        "proj.bias": to_numpy(pl["proj.bias"]),
        "compound_prompt_projections.weight": _stack(weights, (vision_width, width)),
        "compound_prompt_projections.bias": _stack(biases, (vision_width,)),
    }
    prefix = official_prefix(ctx_init, n_ctx)
    return PromptArtifact(
        _manifest(MaPLeMethod.name, checkpoint, ckpt, backbone, classnames, prefix), tensors
    )


def import_ivlp(
    checkpoint: str | Path,
    *,
    classnames: list[str],
    backbone: BackboneSpec,
    ctx_init: str = DEFAULT_CTX_INIT,
) -> PromptArtifact:
    """PromptSRC or IVLP. Example:
    >>> import_ivlp("output/.../VLPromptLearner/model.pth.tar-20", classnames=names,
    ...             backbone=BackboneSpec.parse("ViT-B-16:openai")).save("artifacts/promptsrc")
    """
    ckpt, state = _load(checkpoint)
    state = {k: v for k, v in state.items() if not k.startswith("prompt_learner.ZS_image_encoder.")}
    if "prompt_learner.ctx" not in state or "image_encoder.VPT" not in state:
        raise ArtifactError(
            f"{checkpoint} is not a PromptSRC/IVLP checkpoint: it needs prompt_learner.ctx and "
            f"image_encoder.VPT (keys: {sorted(state)[:8]})"
        )
    ctx, vpt = state["prompt_learner.ctx"], state["image_encoder.VPT"]
    _check_width(ctx, backbone)
    blocks = r"transformer\.resblocks\.(\d+)\.VPT_shallow"
    # block 0 never has VPT_shallow: its prompts are `ctx` / `VPT`, added before the blocks
    text = [ctx, *_indexed(state, rf"text_encoder\.{blocks}", 1)]
    vision = [vpt, *_indexed(state, rf"image_encoder\.{blocks}", 1)]
    tensors = {
        "text_prompts": np.stack([to_numpy(t).astype(np.float32) for t in text]),
        "vision_prompts": np.stack([to_numpy(t).astype(np.float32) for t in vision]),
    }
    prefix = official_prefix(ctx_init, int(ctx.shape[0]))
    return PromptArtifact(
        _manifest(IVLPMethod.name, checkpoint, ckpt, backbone, classnames, prefix), tensors
    )
