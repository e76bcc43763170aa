"""The CLIP family as the common layers see it (models/family.py)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel

from promptserve.models.artifacts import ArtifactManifest
from promptserve.models.bundle import Bundle
from promptserve.models.clip.artifacts import ClipArtifactManifest
from promptserve.models.clip.bundle import ClipBundleConfig, clip_config, migrate_v1
from promptserve.models.family import Family


class ClipFamily(Family):
    name: ClassVar[str] = "clip"
    bundle_config: ClassVar[type[BaseModel]] = ClipBundleConfig
    artifact_manifest: ClassVar[type[ArtifactManifest]] = ClipArtifactManifest

    def torch_graphs(self, bundle: Bundle) -> dict[str, Any]:
        from promptserve.models.clip.graph_set import bundle_modules

        config = clip_config(bundle)
        return bundle_modules(config.backbone.load(), config)

    def deployments(self) -> tuple[type, type]:
        from promptserve.models.clip.serve.encoder import EncoderDeployment
        from promptserve.models.clip.serve.gateway import GatewayIngress

        return GatewayIngress, EncoderDeployment

    def import_commands(self) -> dict[str, Any]:
        from promptserve.models.clip.export.commands import COMMANDS

        return dict(COMMANDS)

    def migrate_bundle(self, data: dict[str, Any]) -> dict[str, Any]:
        return migrate_v1(data)


CLIP = ClipFamily()
