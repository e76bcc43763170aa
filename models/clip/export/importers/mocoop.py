"""Import a MoCoOp checkpoint saved by the official trainer (dyabel/mocoop + Dassl).

`prompting/moe.py::MoCoOp.build_model` registers the whole CustomCLIP, so
`prompt_learner/model.pth.tar-N` holds the frozen towers too; kept are the experts'
`prompt_learner.ctx_before_{k}` / `ctx_after_{k}`, the gate `prompt_learner.gate.{weight,bias}`
and, with ENABLE_CORRECTION, `prompt_learner.w`. The expert templates are not in the file:
pass them in expert order (the first template of each group of the config's PROMPTS/GROUPS;
`PromptLearner.__init__` indexes PROMPTS by the cumulative group sizes). Checkpoints trained
with FINETUNE_VIT_LN carry fine-tuned vision LayerNorms, which a frozen-backbone bundle does
not serve: the importer warns when the file holds vision-tower weights.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from promptserve.exporters.checkpoints import extract_state_dict, load_checkpoint
from promptserve.models.artifacts import ArtifactError, PromptArtifact
from promptserve.models.clip.artifacts import ClipArtifactManifest
from promptserve.models.clip.backbone import BackboneSpec
from promptserve.models.clip.export.importers import checkpoint_source, to_numpy
from promptserve.models.clip.methods.mocoop import MoCoOpMethod, MoCoOpParams

log = logging.getLogger("promptserve.import")


def import_mocoop(
    checkpoint: str | Path,
    *,
    classnames: list[str],
    backbone: BackboneSpec,
    templates: list[str],
) -> PromptArtifact:
    """Example:
    >>> import_mocoop("output/.../prompt_learner/model.pth.tar-25", classnames=names,
    ...               backbone=BackboneSpec.parse("ViT-B-16:openai"),
    ...               templates=["a photo of a {}.", "a photo of many {}.", ...])
    """
    params = MoCoOpParams(templates=list(templates))
    ckpt = load_checkpoint(checkpoint)
    state = extract_state_dict(ckpt)
    pl = {k.removeprefix("prompt_learner."): v for k, v in state.items()}
    experts = sorted(int(m.group(1)) for k in pl if (m := re.fullmatch(r"ctx_before_(\d+)", k)))
    if not experts or "gate.weight" not in pl:
        raise ArtifactError(
            f"{checkpoint} is not a MoCoOp checkpoint: it needs prompt_learner.ctx_before_<k> "
            f"and prompt_learner.gate.weight (keys: {sorted(state)[:8]})"
        )
    if experts != list(range(len(params.templates))):
        raise ArtifactError(
            f"{checkpoint} holds {len(experts)} experts but {len(params.templates)} templates "
            "were given; pass one template per expert, in expert order"
        )
    if any(re.search(r"image_encoder\..*ln_[12]\.", k) for k in state):
        log.warning(
            "%s holds vision-tower LayerNorm weights (FINETUNE_VIT_LN); they are not imported: "
            "the frozen backbone is served, as the docs explain",
            checkpoint,
        )
    tensors = {}
    for k in experts:
        for side in ("before", "after"):
            key = f"ctx_{side}_{k}"
            if key not in pl:
                raise ArtifactError(f"{checkpoint} lacks prompt_learner.{key}")
            tensors[f"ctx_{side}.{k}"] = to_numpy(pl[key])
    for key in ("gate.weight", "gate.bias", "w"):
        if key in pl:
            tensors[key] = to_numpy(pl[key])
    width = backbone.text_width()
    if tensors["ctx_before.0"].shape[-1] != width:
        raise ArtifactError(
            f"context width {tensors['ctx_before.0'].shape[-1]} does not match {backbone.arch}'s "
            f"text width {width}; was it trained on another CLIP backbone?"
        )
    manifest = ClipArtifactManifest(
        method=MoCoOpMethod.name,
        backbone=backbone.id,
        classnames=list(classnames),
        hparams=params.model_dump(),
        source=checkpoint_source(checkpoint, ckpt),
    )
    return PromptArtifact(manifest, tensors)
