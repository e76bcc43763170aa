"""`templates`: a hand-written template ensemble (CLIP's zero-shot recipe)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from promptserve.models.artifacts import ArtifactError, PromptArtifact
from promptserve.models.clip.bundle import ClipBundleConfig
from promptserve.models.clip.methods.base import PromptMethod, clip_manifest
from promptserve.models.clip.templates import resolve_templates
from promptserve.models.clip.text import TextTower, template_ensemble


class TemplatesMethod(PromptMethod):
    name = "templates"
    tasks: ClassVar[frozenset[str]] = frozenset({"classify", "segment"})  # text-only prompts

    @classmethod
    def validate(cls, artifact: PromptArtifact, bundle: ClipBundleConfig) -> None:
        super().validate(artifact, bundle)
        try:
            resolve_templates(clip_manifest(artifact).templates or None)
        except ValueError as exc:
            raise ArtifactError(str(exc)) from exc

    @classmethod
    def class_features(cls, artifact: PromptArtifact, tower: TextTower) -> np.ndarray:
        manifest = clip_manifest(artifact)
        templates = resolve_templates(manifest.templates or None)
        return template_ensemble(tower, manifest.classnames, templates)
