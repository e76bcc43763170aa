"""Import a CoCoOp checkpoint saved by the official trainer (KaiyangZhou/CoOp `trainers/cocoop.py`
via Dassl): `prompt_learner/model.pth.tar-N` holding `ctx`, `meta_net.linear1/linear2.*` and the
`token_prefix`/`token_suffix` buffers, which are rebuilt from the given class names instead."""

from __future__ import annotations

from pathlib import Path

from promptserve.exporters.checkpoints import extract_state_dict, load_checkpoint
from promptserve.models.artifacts import ArtifactError, PromptArtifact
from promptserve.models.clip.artifacts import ClipArtifactManifest
from promptserve.models.clip.backbone import BackboneSpec
from promptserve.models.clip.export.importers import checkpoint_source, to_numpy
from promptserve.models.clip.methods.cocoop import META_KEYS


def import_cocoop(
    checkpoint: str | Path, *, classnames: list[str], backbone: BackboneSpec
) -> PromptArtifact:
    """Example:
    >>> import_cocoop(".../prompt_learner/model.pth.tar-10", classnames=names,
    ...               backbone=BackboneSpec.parse("ViT-B-16:openai")).save("artifacts/cocoop")
    """
    ckpt = load_checkpoint(checkpoint)
    state = {k.removeprefix("prompt_learner."): v for k, v in extract_state_dict(ckpt).items()}
    missing = [k for k in ("ctx", *META_KEYS) if k not in state]
    if missing:
        raise ArtifactError(f"{checkpoint} is not a CoCoOp prompt learner: missing {missing}")
    ctx = state["ctx"]
    if ctx.ndim != 2:
        raise ArtifactError(f"CoCoOp `ctx` should be [n_ctx, D]; got {tuple(ctx.shape)}")
    if ctx.shape[-1] != backbone.text_width():
        raise ArtifactError(
            f"context width {ctx.shape[-1]} does not match {backbone.arch}'s text width {backbone.text_width()}"
        )
    tensors = {key: to_numpy(state[key]) for key in ("ctx", *META_KEYS)}
    manifest = ClipArtifactManifest(
        method="cocoop",
        backbone=backbone.id,
        classnames=list(classnames),
        hparams={"n_ctx": int(ctx.shape[0])},
        source=checkpoint_source(checkpoint, ckpt),
    )
    return PromptArtifact(manifest, tensors)
