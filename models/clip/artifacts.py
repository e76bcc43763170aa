"""The CLIP family's artifact manifest: prompts over a set of classes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from promptserve.models.artifacts import ArtifactManifest

MAX_CLASSES = 100_000


class ClipArtifactManifest(ArtifactManifest):
    """A CLIP prompt artifact: which classes, and the texts or vectors that prompt them."""

    family: Literal["clip"] = "clip"
    task: Literal["classify", "anomaly"] = "classify"
    classnames: list[str] = Field(min_length=1, max_length=MAX_CLASSES)
    templates: list[str] | None = Field(
        None, description="Template ensemble, if the method uses one."
    )
    class_texts: list[list[str]] | None = Field(
        None, description="Per-class prompt sentences (CuPL), aligned with `classnames`."
    )

    @field_validator("classnames")
    @classmethod
    def _nonempty_names(cls, names: list[str]) -> list[str]:
        if any(not n.strip() for n in names):
            raise ValueError("class names must be non-empty")
        return names

    def labels(self) -> list[str]:
        return self.classnames
