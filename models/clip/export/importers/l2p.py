"""Import an L2P prompt pool (keys + prompts) into an `l2p` artifact.

Reads JH-LEE-KR/l2p-pytorch checkpoints (`main.py` saves `{"model": state_dict, "optimizer",
"epoch", "args"}`; the pool is `prompt.prompt` [M, Lp, C] and `prompt.prompt_key` [M, C],
`prompt.py::Prompt`) with the restricted unpickler (its pickled `args` Namespace is never
run), or a safetensors file with `prompt`/`prompt_key` (optionally under `prompt.`). The
pool must have been trained on this CLIP backbone: prompt width = its vision width, key
width = its image-feature width (an l2p-pytorch pool for a timm ViT does not fit CLIP).
google-research/l2p (JAX/flax) checkpoints are not read: convert them to safetensors first.
"""

from __future__ import annotations

from pathlib import Path

from promptserve.exporters.checkpoints import extract_state_dict, load_checkpoint
from promptserve.models.artifacts import ArtifactError, PromptArtifact
from promptserve.models.clip.artifacts import ClipArtifactManifest
from promptserve.models.clip.backbone import BackboneSpec
from promptserve.models.clip.export.importers import checkpoint_source, to_numpy
from promptserve.models.clip.methods.l2p import L2PMethod
from promptserve.models.clip.templates import resolve_templates

DEFAULT_TOP_N = 5  # l2p-pytorch configs: --top_k 5, --length 5, --size 10


def import_l2p(
    checkpoint: str | Path,
    *,
    classnames: list[str],
    backbone: BackboneSpec,
    top_n: int = DEFAULT_TOP_N,
    templates: str | list[str] | None = None,
) -> PromptArtifact:
    """Example:
    >>> import_l2p("output/cifar100_l2p/checkpoint/task10_checkpoint.pth", classnames=names,
    ...            backbone=BackboneSpec.parse("ViT-B-16:openai"), top_n=5).save("artifacts/l2p")
    """
    ckpt = load_checkpoint(checkpoint)
    inner = ckpt["model"] if isinstance(ckpt.get("model"), dict) else ckpt
    state = extract_state_dict(inner)
    pool = {k.removeprefix("prompt."): v for k, v in state.items()}
    if "prompt" not in pool or "prompt_key" not in pool:
        raise ArtifactError(
            f"{checkpoint} is not an L2P prompt pool: it needs prompt.prompt and "
            f"prompt.prompt_key (keys: {sorted(state)[:8]})"
        )
    prompt, key = pool["prompt"], pool["prompt_key"]
    cfg = backbone.model_cfg()
    vision_width, embed_dim = int(cfg["vision_cfg"]["width"]), int(cfg["embed_dim"])
    if prompt.ndim != 3 or prompt.shape[-1] != vision_width:
        raise ArtifactError(
            f"prompts {tuple(prompt.shape)} should be [M, Lp, {vision_width}] for "
            f"{backbone.arch}'s vision tower; was the pool trained on another backbone?"
        )
    if key.ndim != 2 or key.shape != (prompt.shape[0], embed_dim):
        raise ArtifactError(
            f"keys {tuple(key.shape)} should be [{prompt.shape[0]}, {embed_dim}] (one per "
            f"prompt, as wide as {backbone.arch}'s image features)"
        )
    manifest = ClipArtifactManifest(
        method=L2PMethod.name,
        backbone=backbone.id,
        classnames=list(classnames),
        templates=list(resolve_templates(templates)),
        hparams={"top_n": int(top_n)},
        source=checkpoint_source(checkpoint, ckpt),
    )
    return PromptArtifact(manifest, {"prompt": to_numpy(prompt), "prompt_key": to_numpy(key)})
