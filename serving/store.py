"""Where registered prompt artifacts live: a directory or fsspec URL shared by all replicas.

Layout: `<root>/<prompt_id>/{manifest.json, prompt.safetensors, features.safetensors,
registration.json}`. `registration.json` is written last, so a prompt is visible only once
its class features are in place. Features carry the artifact's content id, so a replica never
serves features of an artifact that was replaced under the same prompt id.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from promptserve.models.artifacts import MANIFEST_FILE, TENSORS_FILE, ArtifactError, PromptArtifact
from promptserve.serving.errors import BackboneMismatch, InvalidInput, PromptNotFound
from promptserve.types import PromptInfo

PROMPT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # whole string: fullmatch
FEATURES_FILE = "features.safetensors"
log = logging.getLogger("promptserve.store")
REGISTRATION_FILE = "registration.json"


@dataclass(frozen=True)
class PromptRef:
    """A registered prompt as a request names it once the gateway has resolved it: the
    encoder loads exactly this content, or answers that it was replaced."""

    prompt_id: str
    content_id: str


def shown(value: object, limit: int = 48) -> str:
    """A client's value as an error message quotes it: repr'd, and cut short, so a megabyte of
    input never comes back in the error."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def is_prompt_id(value: object) -> bool:
    """A well-formed prompt id (what metrics may be tagged with)."""
    return isinstance(value, str) and PROMPT_ID.fullmatch(value) is not None


def check_backbone(served: str, built_for: str) -> None:
    """An artifact runs only on the backbone it was built for."""
    if built_for != served:
        raise BackboneMismatch(
            f"the artifact was built for backbone {built_for!r} but this server runs "
            f"{served!r}; re-import it with --backbone matching the server",
            param="backbone",
        )


def check_prompt_id(prompt_id: str) -> str:
    if not isinstance(prompt_id, str) or not PROMPT_ID.fullmatch(prompt_id):
        raise InvalidInput(
            f"invalid prompt_id {shown(prompt_id)}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            param="prompt_id",
        )
    return prompt_id


class PromptStore:
    def __init__(self, url: str) -> None:
        import fsspec

        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.fs.makedirs(self.root, exist_ok=True)

    def _path(self, prompt_id: str, name: str = "") -> str:
        check_prompt_id(prompt_id)
        return f"{self.root}/{prompt_id}/{name}".rstrip("/")

    def put(self, prompt_id: str, artifact: PromptArtifact, features: np.ndarray) -> PromptInfo:
        from safetensors.numpy import save

        content_id = artifact.content_id
        self.fs.makedirs(self._path(prompt_id), exist_ok=True)
        reg = self._path(prompt_id, REGISTRATION_FILE)
        if self.fs.exists(reg):
            self.fs.rm(reg)
        self.fs.pipe(
            self._path(prompt_id, MANIFEST_FILE),
            artifact.manifest.model_dump_json(indent=2).encode(),
        )
        self.fs.pipe(self._path(prompt_id, TENSORS_FILE), artifact.tensor_bytes())
        blob = save(
            {"features": np.ascontiguousarray(features, np.float32)},
            metadata={"content_id": content_id},
        )
        self.fs.pipe(self._path(prompt_id, FEATURES_FILE), blob)
        registered = {
            "content_id": content_id,
            "registered_at": datetime.now(timezone.utc).isoformat(),
        }
        self.fs.pipe(reg, json.dumps(registered).encode())
        return self.info(prompt_id)

    def info(self, prompt_id: str) -> PromptInfo:
        """The registered prompt's description; a prompt whose stored files no longer parse
        is quarantined: a 404 saying so, logged, and left out of `list`."""
        try:
            reg = json.loads(self.fs.cat(self._path(prompt_id, REGISTRATION_FILE)))
            manifest = PromptArtifact.from_parts(
                self.fs.cat(self._path(prompt_id, MANIFEST_FILE)).decode(), None
            ).manifest
            labels = manifest.labels()
            return PromptInfo(
                prompt_id=prompt_id,
                content_id=reg["content_id"],
                method=manifest.method,
                task=manifest.task,
                backbone=manifest.backbone,
                num_classes=len(labels) if labels is not None else None,
                classnames=labels,
                created_at=manifest.created_at,
                registered_at=reg["registered_at"],
            )
        except FileNotFoundError:
            raise PromptNotFound(
                f"no prompt {prompt_id!r} is registered; list them with GET /v1/prompts",
                param="prompt_id",
            ) from None
        except (ArtifactError, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            log.error("prompt %s is corrupt in the store, not served: %s", prompt_id, exc)
            raise PromptNotFound(
                f"prompt {prompt_id!r} is corrupt in the store and is not served; register it "
                "again (or delete it)",
                param="prompt_id",
            ) from None

    def list(self) -> list[PromptInfo]:
        infos = []
        for entry in sorted(self.fs.ls(self.root, detail=False)):
            prompt_id = entry.rstrip("/").rsplit("/", 1)[-1]
            if PROMPT_ID.fullmatch(prompt_id) and self.fs.exists(
                self._path(prompt_id, REGISTRATION_FILE)
            ):
                try:
                    infos.append(self.info(prompt_id))
                except PromptNotFound:  # deleted while listing
                    continue
        return infos

    def delete(self, prompt_id: str) -> None:
        """Remove a prompt, corrupt ones included; 404 if there is none."""
        if not self.fs.exists(self._path(prompt_id, REGISTRATION_FILE)):
            self.info(prompt_id)  # the 404
        self.fs.rm(self._path(prompt_id), recursive=True)

    def load(self, prompt_id: str, content_id: str) -> tuple[PromptArtifact, np.ndarray]:
        """The artifact and its registration-time class features, if still `content_id`."""
        from safetensors.numpy import load

        try:
            blob = self.fs.cat(self._path(prompt_id, FEATURES_FILE))
            manifest = self.fs.cat(self._path(prompt_id, MANIFEST_FILE)).decode()
            tensors = self.fs.cat(self._path(prompt_id, TENSORS_FILE))
        except FileNotFoundError:
            raise PromptNotFound(f"prompt {prompt_id!r} was deleted", param="prompt_id") from None
        if _safetensors_metadata(blob).get("content_id") != content_id:
            raise PromptNotFound(
                f"prompt {prompt_id!r} was replaced; retry the request", param="prompt_id"
            )
        artifact = PromptArtifact.from_parts(manifest, tensors)
        if artifact.content_id != content_id:  # the files changed under us, or were altered
            raise PromptNotFound(
                f"prompt {prompt_id!r} no longer holds the artifact that was resolved (replaced "
                "or altered in the store); retry the request",
                param="prompt_id",
            )
        return artifact, load(blob)["features"]


def _safetensors_metadata(blob: bytes) -> dict[str, str]:
    header_len = int.from_bytes(blob[:8], "little")
    metadata: dict[str, str] = json.loads(blob[8 : 8 + header_len]).get("__metadata__", {})
    return metadata
