"""What every prompt method provides: validation against a backbone and class features."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from promptserve.exporters.artifacts import ArtifactError, PromptArtifact
from promptserve.exporters.text import TextTower


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PromptMethod(ABC):
    """A prompt method whose per-class text features do not depend on the input image, so the
    server computes them once at registration and a request costs one image pass + a matmul."""

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[str]] = frozenset({"classify"})
    params_model: ClassVar[type[BaseModel]] = NoParams

    @classmethod
    def params(cls, artifact: PromptArtifact) -> Any:
        try:
            return cls.params_model.model_validate(artifact.manifest.hparams)
        except ValidationError as exc:
            raise ArtifactError(f"{cls.name} hparams: {exc.errors()[0]['msg']}") from exc

    @classmethod
    def validate(cls, artifact: PromptArtifact, *, text_width: int) -> None:
        """Raise ArtifactError if the artifact cannot run on a backbone of this text width."""
        cls.params(artifact)

    @classmethod
    @abstractmethod
    def class_features(cls, artifact: PromptArtifact, tower: TextTower) -> np.ndarray:
        """[n_cls, E] L2-normalised class text features."""
