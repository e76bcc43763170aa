"""Import a CoOp checkpoint saved by the official trainer (KaiyangZhou/CoOp + Dassl).

The file is `output/.../prompt_learner/model.pth.tar-N` (or `model-best.pth.tar`):
`{"state_dict": {"ctx", "token_prefix", "token_suffix"}, "epoch", "optimizer", "scheduler", ...}`.
Only `ctx` is kept: like CoOp's `load_model`, the prefix/suffix token embeddings are rebuilt
from the class names given here (which may differ from training, e.g. base-to-new).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from promptserve.exporters.checkpoints import extract_state_dict, load_checkpoint
from promptserve.models.artifacts import ArtifactError, PromptArtifact
from promptserve.models.clip.artifacts import ClipArtifactManifest
from promptserve.models.clip.backbone import BackboneSpec
from promptserve.models.clip.export.importers import checkpoint_source, to_numpy
from promptserve.models.clip.methods.coop import CoOpMethod

CTX_KEYS = ("ctx", "prompt_learner.ctx")


def import_coop(
    checkpoint: str | Path,
    *,
    classnames: list[str],
    backbone: BackboneSpec,
    class_token_position: Literal["end", "middle", "front"] = "end",
    method: str = CoOpMethod.name,
) -> PromptArtifact:
    """Read `checkpoint` without executing it and return a `coop` artifact.

    Example:
        >>> art = import_coop("output/imagenet/CoOp/rn50_16shots/nctx16_cscFalse_ctpend/seed1/"
        ...                   "prompt_learner/model.pth.tar-50", classnames=names,
        ...                   backbone=BackboneSpec.parse("ViT-B-16:openai"))
        >>> art.save("artifacts/coop-imagenet")
    """
    ckpt = load_checkpoint(checkpoint)
    state = extract_state_dict(ckpt)
    key = next((k for k in CTX_KEYS if k in state), None)
    if key is None:
        raise ArtifactError(
            f"{checkpoint} has no context vectors (looked for {CTX_KEYS}); keys: {sorted(state)[:10]}"
        )
    ctx = state[key].detach().cpu()
    if ctx.ndim not in (2, 3):
        raise ArtifactError(
            f"`ctx` should be [n_ctx, D] or [n_cls, n_ctx, D]; got {tuple(ctx.shape)}"
        )
    csc = ctx.ndim == 3
    if csc and ctx.shape[0] != len(classnames):
        raise ArtifactError(
            f"class-specific context holds {ctx.shape[0]} classes but {len(classnames)} class names were "
            "given; pass the class list the checkpoint was trained on, in training order"
        )
    width = backbone.text_width()
    if ctx.shape[-1] != width:
        raise ArtifactError(
            f"context width {ctx.shape[-1]} does not match {backbone.arch}'s text width {width}; "
            "was it trained on another CLIP backbone?"
        )
    manifest = ClipArtifactManifest(
        method=method,
        backbone=backbone.id,
        classnames=list(classnames),
        hparams={
            "n_ctx": int(ctx.shape[-2]),
            "csc": csc,
            "class_token_position": class_token_position,
        },
        source=checkpoint_source(checkpoint, ckpt),
    )
    return PromptArtifact(manifest, {"ctx": to_numpy(ctx)})


def import_kgcoop(
    checkpoint: str | Path, *, classnames: list[str], backbone: BackboneSpec
) -> PromptArtifact:
    """KgCoOp (htyao89/KgCoOp `trainers/kgcoop.py`) saves CoOp's prompt learner plus keys it
    does not use at inference (`bias_vectors`, `meta_net.*`); only `ctx` is kept, and the class
    token is at the end, as its PromptLearner.forward does."""
    return import_coop(
        checkpoint,
        classnames=classnames,
        backbone=backbone,
        class_token_position="end",
        method="kgcoop",
    )
