"""Import an AnomalyCLIP checkpoint as zqhang/AnomalyCLIP `train.py` saves it:
`torch.save({"prompt_learner": prompt_learner.state_dict()}, "epoch_N.pth")`.

Kept: `ctx_pos`, `ctx_neg` ([n_cls=1, states=1, n_ctx, D]) and `compound_prompts_text.{i}`.
Dropped: `compound_prompt_projections.*` (built but unused at inference), the token
prefix/suffix buffers and tokenized prompts (rebuilt from the fixed "object" prompts).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from promptserve.exporters.checkpoints import load_checkpoint
from promptserve.models.artifacts import ArtifactError, PromptArtifact
from promptserve.models.clip.artifacts import ClipArtifactManifest
from promptserve.models.clip.backbone import BackboneSpec
from promptserve.models.clip.export.importers import checkpoint_source, to_numpy
from promptserve.models.clip.export.importers.deep import _indexed
from promptserve.models.clip.methods.anomalyclip import AnomalyCLIPParams


def import_anomalyclip(
    checkpoint: str | Path, *, backbone: BackboneSpec, params: AnomalyCLIPParams | None = None
) -> PromptArtifact:
    """Example:
    >>> import_anomalyclip("checkpoints/9_12_4_multiscale/epoch_15.pth",
    ...                    backbone=BackboneSpec.parse("ViT-L-14-336:openai")).save("artifacts/ac")
    """
    ckpt = load_checkpoint(checkpoint)
    state = ckpt.get("prompt_learner") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not {"ctx_pos", "ctx_neg"} <= set(state):
        raise ArtifactError(
            f"{checkpoint} is not an AnomalyCLIP checkpoint: expected "
            '{"prompt_learner": {"ctx_pos", "ctx_neg", "compound_prompts_text.N", ...}}'
        )
    width = backbone.text_width()
    if state["ctx_pos"].shape[-1] != width:
        raise ArtifactError(
            f"context width {state['ctx_pos'].shape[-1]} does not match {backbone.arch}'s text "
            f"width {width}; was it trained on another CLIP backbone?"
        )
    contexts = {
        k: to_numpy(state[k]).astype(np.float32).reshape(-1, width) for k in ("ctx_pos", "ctx_neg")
    }
    deep = [
        to_numpy(t).astype(np.float32) for t in _indexed(state, r"compound_prompts_text\.(\d+)", 0)
    ]
    if not deep:
        raise ArtifactError(f"{checkpoint} holds no compound_prompts_text (text-side deep prompts)")
    manifest = ClipArtifactManifest(
        method="anomalyclip",
        task="anomaly",
        backbone=backbone.id,
        classnames=["normal", "anomalous"],
        hparams=(params or AnomalyCLIPParams()).model_dump(mode="json"),
        source=checkpoint_source(checkpoint, ckpt),
    )
    return PromptArtifact(manifest, {**contexts, "compound_prompts_text": np.stack(deep)})
