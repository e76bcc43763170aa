"""The LLM family as the common layers see it (models/family.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from promptserve.models.artifacts import ArtifactManifest
from promptserve.models.bundle import Bundle, BundleError
from promptserve.models.family import Family
from promptserve.models.llm.artifacts import LlmArtifactManifest
from promptserve.models.llm.bundle import LlmBundleConfig, llm_config

if TYPE_CHECKING:
    from promptserve.serving.config import AppConfig


class LlmFamily(Family):
    name: ClassVar[str] = "llm"
    bundle_config: ClassVar[type[BaseModel]] = LlmBundleConfig
    artifact_manifest: ClassVar[type[ArtifactManifest]] = LlmArtifactManifest

    def manifest_model(self, data: dict[str, Any]) -> type[ArtifactManifest]:
        """PromptReps prompts (retrieve) or a generation prompt (soft prompt, IDP pool, hard
        prompt: models/llm/generate/artifacts.py), by `method`."""
        from promptserve.models.llm.generate.artifacts import manifest_for

        return manifest_for(data) or self.artifact_manifest

    def torch_graphs(self, bundle: Bundle) -> dict[str, Any]:
        from promptserve.models.llm.graph_set import bundle_modules

        config = llm_config(bundle)
        spec = config.backbone_spec
        if spec.id != bundle.backbone_id:  # a local folder whose weights changed since export
            raise BundleError(
                f"{bundle.dir} was exported from {bundle.backbone_id}, but {spec.spec} now "
                f"holds {spec.id}; re-export the bundle (its indexes belong to the old weights)"
            )
        return bundle_modules(spec.load(), config)

    def deployments(self) -> tuple[type, type]:
        from promptserve.models.llm.serve.encoder import LlmEncoder
        from promptserve.models.llm.serve.gateway import GatewayIngress

        return GatewayIngress, LlmEncoder

    def services(self, config: AppConfig | None = None) -> dict[str, type]:
        """The index holder (serving/deployments/indexer.py): its own deployment, since the
        embedded index engine's files have one owner; and the generator
        (models/llm/serve/generator.py) where the config has a `generator` section: it holds
        the whole backbone, which retrieval alone never loads."""
        from promptserve.serving.deployments.indexer import Indexer

        services: dict[str, type] = {"indexer": Indexer}
        if config is None or config.generator is not None:
            from promptserve.models.llm.serve.generator import Generator

            services["generator"] = Generator
        return services

    def import_commands(self) -> dict[str, Any]:
        from promptserve.models.llm.export.commands import COMMANDS

        return dict(COMMANDS)


LLM = LlmFamily()
