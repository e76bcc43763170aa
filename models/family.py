"""Model families by name: the one place the common layer learns what a family provides.

A family (`clip` today, `llm` next) is a subpackage of `promptserve.models` exposing a
`Family` object. The common layer names families only as import paths in `FAMILIES` and
imports one when a bundle or artifact says it belongs to it, so a server or exporter loads
just the families it uses and no common module imports a family module.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from promptserve.models.artifacts import ArtifactManifest
    from promptserve.models.bundle import Bundle
    from promptserve.serving.config import AppConfig

# name -> "module:attribute" of its Family object; add_family() registers more
FAMILIES: dict[str, str] = {
    "clip": "promptserve.models.clip.family:CLIP",
    "llm": "promptserve.models.llm.family:LLM",
}
_loaded: dict[str, Family] = {}


class UnknownFamily(ValueError):
    """A bundle or artifact names a family this installation does not have."""


class Family(ABC):
    """What a model family contributes to the common layers.

    Serving-time parts (`deployments`) and torch-time parts (`torch_graphs`) are methods, so
    a family module imports neither Ray nor torch until they are asked for.
    """

    name: ClassVar[str]
    #: the family's section of bundle.json (`BundleManifest.config`)
    bundle_config: ClassVar[type[BaseModel]]
    #: the family's prompt-artifact manifest (a subclass of the common ArtifactManifest)
    artifact_manifest: ClassVar[type[ArtifactManifest]]

    def manifest_model(self, data: dict[str, Any]) -> type[ArtifactManifest]:
        """The manifest class of one artifact's JSON (`data`): `artifact_manifest` unless the
        family has several kinds of artifact (the LLM family picks by `method`)."""
        return self.artifact_manifest

    @abstractmethod
    def torch_graphs(self, bundle: Bundle) -> dict[str, Any]:
        """Eager torch modules for every graph the bundle has, by graph name: the same
        modules export traced, so the torch runtime runs what ONNX runs."""

    @abstractmethod
    def deployments(self) -> tuple[type, type]:
        """(gateway class, encoder class) of the family's Ray Serve application."""

    def services(self, config: AppConfig | None = None) -> dict[str, type]:
        """More deployments the gateway talks to, by name (e.g. the LLM family's index
        holder): each is built with the app config, one replica set per name, and its handle
        reaches the gateway in `services`. `config` may switch some off (None: all the family
        has). Default: none."""
        return {}

    def import_commands(self) -> dict[str, Any]:
        """`promptserve import` subcommands by name (objects with `help`, `arguments(parser)`
        and `run(args) -> PromptArtifact`); export time, so imported only when asked for."""
        return {}

    def migrate_bundle(self, data: dict[str, Any]) -> dict[str, Any]:
        """Turn an older bundle.json of this family into the current layout (default: as is)."""
        return data


def add_family(name: str, target: str) -> None:
    """Register a family outside this package: `target` is "module:attribute"."""
    FAMILIES[name] = target
    _loaded.pop(name, None)


def get_family(name: str) -> Family:
    """The Family object registered under `name` (imported on first use)."""
    family = _loaded.get(name)
    if family is not None:
        return family
    try:
        module, attribute = FAMILIES[name].split(":")
    except KeyError:
        raise UnknownFamily(
            f"unknown model family {name!r}; this installation has {sorted(FAMILIES)}"
        ) from None
    family = getattr(importlib.import_module(module), attribute)
    if not isinstance(family, Family):
        raise TypeError(f"{FAMILIES[name]} is not a promptserve Family")
    _loaded[name] = family
    return family
