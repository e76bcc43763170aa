"""Import CuPL's generated prompts (sarahpratt/CuPL `all_prompts/*.json`: {classname: [sentence, ...]})."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from promptserve.models.artifacts import ArtifactError, PromptArtifact
from promptserve.models.clip.artifacts import ClipArtifactManifest
from promptserve.models.clip.templates import IMAGENET_80


def import_cupl(
    prompts: str | Path,
    *,
    backbone_id: str,
    classnames: list[str] | None = None,
    variant: Literal["cupl", "both"] = "cupl",
) -> PromptArtifact:
    """`variant="both"` adds CLIP's 80 ImageNet templates to each class's sentences, as CuPL's
    "CuPL + standard" classifier does. `classnames` picks and orders classes (default: the
    JSON's order).

    Example:
        >>> import_cupl("CuPL_image_prompts.json", backbone_id="ViT-L-14:openai", variant="both")
    """
    try:
        data = json.loads(Path(prompts).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"cannot read CuPL prompts {prompts}: {exc}") from exc
    if not isinstance(data, dict) or not all(
        isinstance(v, list) and all(isinstance(s, str) for s in v) for v in data.values()
    ):
        raise ArtifactError(f"{prompts}: expected a JSON object {{classname: [sentence, ...]}}")
    names = list(classnames) if classnames is not None else list(data)
    missing = [n for n in names if n not in data]
    if missing:
        raise ArtifactError(
            f"{prompts} has no sentences for {missing[:5]} ({len(missing)} classes)"
        )
    return PromptArtifact(
        ClipArtifactManifest(
            method="cupl",
            backbone=backbone_id,
            classnames=names,
            class_texts=[data[n] for n in names],
            templates=list(IMAGENET_80) if variant == "both" else None,
            hparams={"variant": variant},
            source=Path(prompts).name,
        )
    )
