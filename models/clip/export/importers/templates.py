"""Build a `templates` artifact from class names and a template set (no training involved)."""

from __future__ import annotations

from promptserve.models.artifacts import PromptArtifact
from promptserve.models.clip.artifacts import ClipArtifactManifest
from promptserve.models.clip.templates import resolve_templates


def build_templates(
    classnames: list[str], *, backbone_id: str, templates: str | list[str] | None = "imagenet80"
) -> PromptArtifact:
    """Example:
    >>> build_templates(["cat", "dog"], backbone_id="ViT-B-32:openai", templates="imagenet80")
    """
    return PromptArtifact(
        ClipArtifactManifest(
            method="templates",
            backbone=backbone_id,
            classnames=list(classnames),
            templates=list(resolve_templates(templates)),
        )
    )
