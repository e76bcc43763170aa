"""Prompt artifacts: a pydantic manifest plus tensors in safetensors, content-addressed.

An artifact is the small learned part of a prompt method (context vectors, templates, class
names). It never holds pickled objects. Its content id is the sha256 of the manifest's canonical
JSON (without `created_at`, so re-importing the same checkpoint gives the same id) and of the
tensor file's bytes.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

MANIFEST_FILE = "manifest.json"
TENSORS_FILE = "prompt.safetensors"
# Artifacts written before families existed are CLIP artifacts; their content ids leave the
# field out, so those ids stay valid.
DEFAULT_FAMILY = "clip"


class ArtifactError(ValueError):
    """An artifact that cannot be read or does not fit its backbone."""


class ArtifactMismatch(ArtifactError):
    """A well-formed artifact made for another model (e.g. a soft prompt of another width):
    a conflict with this backbone (409), not a malformed request."""


class ArtifactManifest(BaseModel):
    """The common part of every artifact's manifest: what it is and for which backbone.

    Each family subclasses it with the fields its tasks need (class names only where a task
    has classes); `PromptArtifact.from_parts` picks the subclass by `family`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    family: str = Field(
        DEFAULT_FAMILY, description="Model family (models/family.py); `clip` if absent."
    )
    task: str = Field(description="What the artifact serves, e.g. `classify`.")
    method: str = Field(description="Prompt method, e.g. `templates` or `coop`.")
    backbone: str = Field(description="Backbone id the artifact was built for.")
    hparams: dict[str, Any] = Field(default_factory=dict, description="Method hyper-parameters.")
    source: str | None = Field(
        None, description="Where it came from, e.g. the imported checkpoint."
    )
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    def labels(self) -> list[str] | None:
        """The class names a response indexes, for tasks that have classes."""
        return None


def manifest_model(data: dict[str, Any]) -> type[ArtifactManifest]:
    """The manifest class of the family `data` names (a family import on first use)."""
    from promptserve.models.family import UnknownFamily, get_family

    name = data.get("family", DEFAULT_FAMILY)
    try:
        return get_family(str(name)).manifest_model(data)
    except UnknownFamily as exc:
        raise ArtifactError(str(exc)) from None


class PromptArtifact:
    """A manifest and its tensors (numpy, any float dtype)."""

    def __init__(self, manifest: ArtifactManifest, tensors: dict[str, np.ndarray] | None = None):
        self.manifest = manifest
        self.tensors = dict(tensors or {})

    # -- serialisation ---------------------------------------------------------------------
    def tensor_bytes(self) -> bytes:
        from safetensors.numpy import save

        return save({k: np.ascontiguousarray(v) for k, v in sorted(self.tensors.items())})

    @property
    def content_id(self) -> str:
        # Unset optional fields are left out, so adding one later keeps existing ids stable.
        canonical = self.manifest.model_dump(mode="json", exclude={"created_at"}, exclude_none=True)
        if canonical.get("family") == DEFAULT_FAMILY:
            del canonical["family"]
        h = hashlib.sha256(json.dumps(canonical, sort_keys=True).encode())
        h.update(self.tensor_bytes())
        return h.hexdigest()

    def save(self, directory: str | Path) -> Path:
        """Write `manifest.json` and `prompt.safetensors` into `directory`."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        (out / MANIFEST_FILE).write_text(self.manifest.model_dump_json(indent=2))
        (out / TENSORS_FILE).write_bytes(self.tensor_bytes())
        return out

    @classmethod
    def load(cls, directory: str | Path) -> PromptArtifact:
        path = Path(directory)
        try:
            manifest = json.loads((path / MANIFEST_FILE).read_text())
        except FileNotFoundError as exc:
            raise ArtifactError(
                f"{path} has no {MANIFEST_FILE}; is it an artifact directory?"
            ) from exc
        blob = (path / TENSORS_FILE).read_bytes() if (path / TENSORS_FILE).exists() else None
        return cls.from_parts(manifest, blob)

    @classmethod
    def from_parts(cls, manifest: dict[str, Any] | str, tensors: bytes | None) -> PromptArtifact:
        """Validate a manifest (dict or JSON) and safetensors bytes, e.g. from an HTTP body."""
        try:
            data = json.loads(manifest) if isinstance(manifest, str) else manifest
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"invalid artifact manifest: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ArtifactError("invalid artifact manifest: expected a JSON object")
        try:
            parsed = manifest_model(data).model_validate(data)
        except ValidationError as exc:
            raise ArtifactError(f"invalid artifact manifest: {_first_error(exc)}") from exc
        arrays: dict[str, np.ndarray] = {}
        if tensors:
            from safetensors.numpy import load

            try:
                arrays = load(tensors)
            except Exception as exc:
                raise ArtifactError(f"tensors are not a valid safetensors file: {exc}") from exc
        return cls(parsed, arrays)


def first_validation_error(exc: Any, *, default: str = "body", skip: int = 0) -> tuple[str, str]:
    """(where, message) of a pydantic/FastAPI validation error's first problem; `skip` drops
    leading location parts (FastAPI prefixes "body")."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"][skip:]) or default
    return where, err["msg"]


def _first_error(exc: ValidationError) -> str:
    where, msg = first_validation_error(exc, default="manifest")
    return f"{where}: {msg}"
