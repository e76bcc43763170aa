"""What every prompt method provides: validation against a backbone and class features."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from promptserve.models.artifacts import ArtifactError, PromptArtifact
from promptserve.models.clip.artifacts import ClipArtifactManifest
from promptserve.models.clip.bundle import ClipBundleConfig
from promptserve.models.clip.deep_prompts import DeepPrompts, DeepPromptSlots
from promptserve.models.clip.text import TextTower, l2_normalize


@dataclass(frozen=True)
class ClassHead:
    """Precomputed class features: logits are one matmul, so requests for different prompts
    share the vision batch and differ only here."""

    labels: tuple[str, ...]
    features: np.ndarray  # [n_cls, E], rows L2-normalised
    visual: DeepPrompts | None = None  # deep visual prompts its images go through (MaPLe, IVLP)
    dynamic = False  # True for heads whose text side depends on the image (CoCoOp)

    def logits(self, image_embeds: np.ndarray, logit_scale: float) -> np.ndarray:
        return logit_scale * l2_normalize(image_embeds) @ self.features.T


@dataclass(frozen=True)
class DenseHead(ClassHead):
    """A head that reads one of the bundle's dense graphs (`graph`) instead of the image
    embedding alone: requests whose heads read the same graph share its batch."""

    graph: ClassVar[str]

    def outputs(self, image_embeds: np.ndarray, dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The graph's two outputs -> image scores [B] in [0, 1] and maps [B, S, S] in [0, 1]
        at the graph's input size."""
        raise NotImplementedError


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PromptMethod(ABC):
    """A prompt method whose per-class text features do not depend on the input image, so the
    server computes them once at registration and a request costs one image pass + a matmul."""

    name: ClassVar[str]
    #: the routes its artifacts serve (checked once, at the gateway: models/clip/capabilities.py)
    tasks: ClassVar[frozenset[str]] = frozenset({"classify"})
    #: the bundle graphs its requests run through (a request on a bundle without them is
    #: refused at the gateway, with the export option that adds them)
    graphs: ClassVar[tuple[str, ...]] = ("vision", "text")
    params_model: ClassVar[type[BaseModel]] = NoParams

    @classmethod
    def params(cls, artifact: PromptArtifact) -> Any:
        try:
            return cls.params_model.model_validate(artifact.manifest.hparams)
        except ValidationError as exc:
            raise ArtifactError(f"{cls.name} hparams: {exc.errors()[0]['msg']}") from exc

    @classmethod
    def validate(cls, artifact: PromptArtifact, bundle: ClipBundleConfig) -> None:
        """Raise ArtifactError if the artifact cannot run on this bundle (its widths, and the
        prompted or dense graphs some methods need)."""
        cls.params(artifact)

    @classmethod
    @abstractmethod
    def class_features(cls, artifact: PromptArtifact, tower: TextTower) -> np.ndarray:
        """[n_cls, E] L2-normalised class text features, computed once at registration."""

    @classmethod
    def make_head(
        cls, artifact: PromptArtifact, features: np.ndarray, tower: TextTower
    ) -> ClassHead:
        """The head a replica serves; methods whose text side depends on the image override it."""
        return ClassHead(tuple(clip_manifest(artifact).classnames), features)


def clip_manifest(artifact: PromptArtifact) -> ClipArtifactManifest:
    """The artifact's manifest as a CLIP one (class names, templates, class texts)."""
    manifest = artifact.manifest
    if not isinstance(manifest, ClipArtifactManifest):
        raise ArtifactError(
            f"a CLIP prompt method needs a CLIP artifact; this one is of family {manifest.family!r}"
        )
    return manifest


def prompted_slots(bundle: ClipBundleConfig, method: str) -> DeepPromptSlots:
    """The bundle's prompted graphs, which methods with deep prompts need."""
    if bundle.deep_prompts is None:
        raise ArtifactError(
            f"{method} needs a bundle with prompted graphs (it has deep prompts); re-export the "
            "backbone without --no-deep-prompts"
        )
    return bundle.deep_prompts
