"""`cupl`: class embeddings from LLM-generated descriptions (Pratt et al., ICCV 2023).

Follows sarahpratt/CuPL `classify_imagenet.py::zeroshot_classifier_gpt`: per class, the texts
are the generated sentences (and, for the "both" variant, the 80 ImageNet templates filled with
the class name first), tokenized with truncation, each embedding L2-normalised, averaged over
all of the class's texts together, and re-normalised.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from promptserve.models.artifacts import ArtifactError, PromptArtifact
from promptserve.models.clip.bundle import ClipBundleConfig
from promptserve.models.clip.methods.base import PromptMethod, clip_manifest
from promptserve.models.clip.text import TextTower, text_ensemble


class CuPLParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: Literal["cupl", "both"] = "cupl"


class CuPLMethod(PromptMethod):
    name = "cupl"
    tasks: ClassVar[frozenset[str]] = frozenset({"classify", "segment"})  # text-only prompts
    params_model = CuPLParams

    @classmethod
    def validate(cls, artifact: PromptArtifact, bundle: ClipBundleConfig) -> None:
        super().validate(artifact, bundle)
        m = clip_manifest(artifact)
        texts = m.class_texts
        if texts is None or len(texts) != len(m.classnames):
            raise ArtifactError(
                f"cupl artifact needs `class_texts` with one list per class ({len(m.classnames)}); "
                f"got {None if texts is None else len(texts)}"
            )
        empty = [
            name for name, t in zip(m.classnames, texts, strict=True) if not t and not m.templates
        ]
        if empty:
            raise ArtifactError(f"classes without any sentence: {empty[:5]}")

    @classmethod
    def class_features(cls, artifact: PromptArtifact, tower: TextTower) -> np.ndarray:
        m = clip_manifest(artifact)
        templates = m.templates or []
        per_class = [
            [t.format(name) for t in templates] + list(sentences)
            for name, sentences in zip(m.classnames, m.class_texts or [], strict=True)
        ]
        return text_ensemble(tower, per_class)
