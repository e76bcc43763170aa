"""Where registered prompt artifacts live: a directory or fsspec URL shared by all replicas.

Layout::

    <root>/<prompt_id>/registration.json        the pointer: {"content_id", "registered_at",
                                                 "version"}
    <root>/<prompt_id>/v-<time_ns>-<uuid hex>/  one registration's files: manifest.json,
                                                 prompt.safetensors, features.safetensors

Why: replicas (and clients) register the same prompt id concurrently. Each registration writes
its files into a fresh version directory nobody else writes, then commits with ONE write of the
pointer (a temp file renamed over it on a local filesystem, one object PUT on an object store),
so the last writer wins whole: the manifest, tensors and features served always come from one
registration, and `put` answers with what it wrote itself. A reader reads the pointer once and
every file from the version it names; if that version is removed under it (replaced), it
re-reads the pointer. After committing, a writer removes the version its commit replaced and
sweeps versions that are not current and older than `STALE_AFTER_S` (lost races, crashed
writers); a writer that took longer than `COMMIT_WITHIN_S` to write its files does not commit,
so a sweep never removes a version that is about to become current.

Features carry the artifact's content id, and `load` checks both it and the artifact's content
id, so a replica never serves features of an artifact that was replaced, or files altered in the
store. A pointer without "version" (stores written before versions) names the files directly
in `<root>/<prompt_id>/`; they are read as before and removed by the next registration.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from promptserve.models.artifacts import (
    MANIFEST_FILE,
    TENSORS_FILE,
    ArtifactError,
    ArtifactManifest,
    PromptArtifact,
)
from promptserve.serving.errors import (
    BackboneMismatch,
    BackendUnavailable,
    InvalidInput,
    PromptNotFound,
)
from promptserve.types import PromptInfo

PROMPT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # whole string: fullmatch
FEATURES_FILE = "features.safetensors"
log = logging.getLogger("promptserve.store")
REGISTRATION_FILE = "registration.json"
VERSION = re.compile(r"v-(\d{1,20})-[0-9a-f]{32}")  # whole string: fullmatch
POINTER_TEMP = re.compile(r"\.registration-(\d{1,20})-[0-9a-f]{32}\.tmp")
FLAT_FILES = (MANIFEST_FILE, TENSORS_FILE, FEATURES_FILE)
STALE_AFTER_S = 600.0  # a version neither current nor this old is a leftover: swept
COMMIT_WITHIN_S = STALE_AFTER_S / 2  # a writer slower than this does not commit (clock skew)
READ_ATTEMPTS = 5  # a reader re-reads the pointer when the version it named was replaced


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


@dataclass(frozen=True)
class Registration:
    """What `registration.json` says: the registration of a prompt id that is served."""

    content_id: str
    registered_at: str
    version: str  # a version directory's name; "" for files directly in the prompt's directory

    def record(self) -> bytes:
        return json.dumps(
            {
                "content_id": self.content_id,
                "registered_at": self.registered_at,
                "version": self.version,
            }
        ).encode()

    @classmethod
    def parse(cls, raw: bytes) -> Registration:
        """Raises ValueError for anything but a registration record."""
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError(f"{REGISTRATION_FILE} is not a JSON object")
        content_id, registered_at = data.get("content_id"), data.get("registered_at")
        version = data.get("version", "")
        if not isinstance(content_id, str) or not isinstance(registered_at, str):
            raise ValueError(f"{REGISTRATION_FILE} lacks content_id or registered_at")
        if not isinstance(version, str) or (version and not VERSION.fullmatch(version)):
            raise ValueError(f"{REGISTRATION_FILE} names no valid version: {shown(version)}")
        return cls(content_id, registered_at, version)


def _prompt_info(prompt_id: str, manifest: ArtifactManifest, reg: Registration) -> PromptInfo:
    labels = manifest.labels()
    return PromptInfo(
        prompt_id=prompt_id,
        content_id=reg.content_id,
        method=manifest.method,
        task=manifest.task,
        backbone=manifest.backbone,
        num_classes=len(labels) if labels is not None else None,
        classnames=labels,
        created_at=manifest.created_at,
        registered_at=reg.registered_at,
    )


def _not_registered(prompt_id: str) -> str:
    return f"no prompt {prompt_id!r} is registered; list them with GET /v1/prompts"


def _count_quarantined() -> None:
    """Count a quarantined prompt; the store works on where metrics do not."""
    try:
        from promptserve.serving.metrics import metrics

        metrics().store_quarantined.inc()
    except (ImportError, RuntimeError, ValueError) as exc:
        log.debug("the store's quarantine counter is unavailable: %s", exc)


class PromptStore:
    def __init__(self, url: str) -> None:
        import fsspec
        from fsspec.implementations.local import LocalFileSystem

        self.fs, self.root = fsspec.core.url_to_fs(url)
        # fsspec's `mv` on a local filesystem is shutil.move: a rename, but one that moves *into*
        # a directory of that name; the pointer is committed with os.replace instead.
        self._local = isinstance(self.fs, LocalFileSystem)
        self.fs.makedirs(self.root, exist_ok=True)

    def _path(self, prompt_id: str, *names: str) -> str:
        """`<root>/<prompt_id>/<names...>`; empty names are skipped, so version "" (the flat
        layout) is the prompt's directory itself."""
        check_prompt_id(prompt_id)
        return "/".join([f"{self.root}/{prompt_id}", *(n for n in names if n)])

    def put(self, prompt_id: str, artifact: PromptArtifact, features: np.ndarray) -> PromptInfo:
        """Register `artifact` (and its class features) as `prompt_id`, replacing whatever was
        registered, whole. Returns what this call registered, even if another registration
        has replaced it by the time this returns."""
        from safetensors.numpy import save

        content_id = artifact.content_id
        files = {
            MANIFEST_FILE: artifact.manifest.model_dump_json(indent=2).encode(),
            TENSORS_FILE: artifact.tensor_bytes(),
            FEATURES_FILE: save(
                {"features": np.ascontiguousarray(features, np.float32)},
                metadata={"content_id": content_id},
            ),
        }
        started = time.monotonic()
        version = f"v-{time.time_ns()}-{uuid.uuid4().hex}"
        directory = self._path(prompt_id, version)
        try:
            self.fs.makedirs(directory, exist_ok=True)
            for name, data in files.items():
                self.fs.pipe(f"{directory}/{name}", data)
            previous = self._pointed_version(prompt_id)  # read before committing
            took = time.monotonic() - started
            if took > COMMIT_WITHIN_S:  # a sweep may already count this version as left over
                raise BackendUnavailable(
                    f"the prompt store took {took:.0f} s to write prompt {prompt_id!r}; it was "
                    "not registered, retry"
                )
        except BaseException:
            self._remove(prompt_id, version)
            raise
        reg = Registration(content_id, datetime.now(timezone.utc).isoformat(), version)
        self._commit(prompt_id, reg.record())  # if it fails, the version is swept later
        current = self._pointed_version(prompt_id)  # None: deleted or broken meanwhile
        if current is not None:
            stale = {version} if current != version else set()  # replaced already: never again
            self._tidy(prompt_id, current, stale | ({previous} if previous is not None else set()))
        return _prompt_info(prompt_id, artifact.manifest, reg)

    def info(self, prompt_id: str) -> PromptInfo:
        """The registered prompt's description; a prompt whose stored files no longer parse
        is quarantined: a 404 saying so, logged, and left out of `list`."""
        missing = _not_registered(prompt_id)
        for _ in range(READ_ATTEMPTS):
            reg = self._current(prompt_id, missing)
            try:
                raw = self.fs.cat(self._path(prompt_id, reg.version, MANIFEST_FILE))
            except FileNotFoundError:
                self._moved_on(prompt_id, reg, missing)
                continue
            try:
                manifest = PromptArtifact.from_parts(raw.decode(), None).manifest
                return _prompt_info(prompt_id, manifest, reg)
            except (ArtifactError, ValueError, TypeError) as exc:
                raise self._quarantined(prompt_id, exc) from None
        raise PromptNotFound(
            f"prompt {prompt_id!r} was replaced while it was read; retry the request",
            param="prompt_id",
        )

    def list(self) -> list[PromptInfo]:
        infos = []
        for entry in sorted(self.fs.ls(self.root, detail=False)):
            prompt_id = entry.rstrip("/").rsplit("/", 1)[-1]
            if PROMPT_ID.fullmatch(prompt_id) and self.fs.exists(
                self._path(prompt_id, REGISTRATION_FILE)
            ):
                try:
                    infos.append(self.info(prompt_id))
                except PromptNotFound:  # deleted while listing, or quarantined
                    continue
        return infos

    def delete(self, prompt_id: str) -> None:
        """Remove a prompt, corrupt ones included; 404 if there is none. A registration still
        being written (a version younger than `STALE_AFTER_S`) is left to commit: a put that
        ends after the delete registers the prompt again."""
        missing = _not_registered(prompt_id)
        try:
            reg = self._registration(prompt_id)
        except FileNotFoundError:
            raise PromptNotFound(missing, param="prompt_id") from None
        except ValueError:  # which version it named is unknown: remove everything
            with contextlib.suppress(FileNotFoundError):  # or another delete did
                self.fs.rm(self._path(prompt_id), recursive=True)
            return
        try:
            self.fs.rm(self._path(prompt_id, REGISTRATION_FILE))
        except FileNotFoundError:  # another delete got there first
            raise PromptNotFound(missing, param="prompt_id") from None
        self._tidy(prompt_id, None, {reg.version, ""})
        with contextlib.suppress(OSError):  # not empty: a registration in flight
            self.fs.rmdir(self._path(prompt_id))

    def load(self, prompt_id: str, content_id: str) -> tuple[PromptArtifact, np.ndarray]:
        """The artifact and its registration-time class features, if still `content_id`."""
        from safetensors import SafetensorError
        from safetensors.numpy import load

        deleted = f"prompt {prompt_id!r} was deleted"
        replaced = f"prompt {prompt_id!r} was replaced; retry the request"
        for _ in range(READ_ATTEMPTS):
            reg = self._current(prompt_id, deleted)
            if reg.content_id != content_id:
                raise PromptNotFound(replaced, param="prompt_id")
            try:
                blob, manifest, tensors = [
                    self.fs.cat(self._path(prompt_id, reg.version, name))
                    for name in (FEATURES_FILE, MANIFEST_FILE, TENSORS_FILE)
                ]
            except FileNotFoundError:
                self._moved_on(prompt_id, reg, deleted)
                continue
            try:
                stored_id = _safetensors_metadata(blob).get("content_id")
                artifact = PromptArtifact.from_parts(manifest.decode(), tensors)
                features = load(blob)["features"]
            except (ArtifactError, ValueError, KeyError, SafetensorError) as exc:
                raise self._quarantined(prompt_id, exc) from None
            if stored_id != content_id or artifact.content_id != content_id:
                log.error("prompt %s was altered in the store, not served", prompt_id)
                _count_quarantined()
                raise PromptNotFound(
                    f"prompt {prompt_id!r} no longer holds the artifact that was resolved "
                    "(replaced or altered in the store); retry the request",
                    param="prompt_id",
                )
            return artifact, features
        raise PromptNotFound(replaced, param="prompt_id")

    # -- the pointer and the versions -------------------------------------------------------
    def _registration(self, prompt_id: str) -> Registration:
        """The pointer; FileNotFoundError if there is none, ValueError if it is corrupt."""
        return Registration.parse(self.fs.cat(self._path(prompt_id, REGISTRATION_FILE)))

    def _current(self, prompt_id: str, missing: str) -> Registration:
        """The pointer, or the 404 `missing` says, or the corrupt 404."""
        try:
            return self._registration(prompt_id)
        except FileNotFoundError:
            raise PromptNotFound(missing, param="prompt_id") from None
        except ValueError as exc:
            raise self._quarantined(prompt_id, exc) from None

    def _moved_on(self, prompt_id: str, reg: Registration, missing: str) -> None:
        """A file of the version `reg` names is missing: return if the pointer names another
        version now (read again), else raise the 404 for a deleted or a corrupt prompt."""
        if self._current(prompt_id, missing) == reg:
            raise self._quarantined(
                prompt_id, FileNotFoundError(f"files of version {reg.version!r} are missing")
            )

    def _quarantined(self, prompt_id: str, exc: Exception) -> PromptNotFound:
        log.error("prompt %s is corrupt in the store, not served: %s", prompt_id, exc)
        _count_quarantined()
        return PromptNotFound(
            f"prompt {prompt_id!r} is corrupt in the store and is not served; register it "
            "again (or delete it)",
            param="prompt_id",
        )

    def _pointed_version(self, prompt_id: str) -> str | None:
        """The version the pointer names (None: no pointer, or a corrupt one)."""
        try:
            return self._registration(prompt_id).version
        except (FileNotFoundError, ValueError):
            return None

    def _commit(self, prompt_id: str, record: bytes) -> None:
        """Write the pointer in one step: readers see the old registration or the new one."""
        pointer = self._path(prompt_id, REGISTRATION_FILE)
        if not self._local:
            self.fs.pipe(pointer, record)  # one object: atomic on object stores
            return
        temp = self._path(prompt_id, f".registration-{time.time_ns()}-{uuid.uuid4().hex}.tmp")
        try:
            with open(temp, "wb") as f:
                f.write(record)
            os.replace(temp, pointer)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def _remove(self, prompt_id: str, version: str) -> None:
        """Remove a version directory ("": the flat layout's files), or what is left of it."""
        paths = (
            [self._path(prompt_id, version)]
            if version
            else [self._path(prompt_id, name) for name in FLAT_FILES]
        )
        for path in paths:
            try:
                self.fs.rm(path, recursive=bool(version))
            except FileNotFoundError:
                continue
            except OSError as exc:  # a concurrent removal, or the store failing: swept later
                log.warning("could not remove %s from the prompt store: %s", path, exc)

    def _tidy(self, prompt_id: str, current: str | None, replaced: set[str]) -> None:
        """Remove the `replaced` versions and the leftovers (versions and pointer temp files
        older than `STALE_AFTER_S`); never `current`."""
        for version in replaced - {current}:
            self._remove(prompt_id, version)
        try:
            entries = self.fs.ls(self._path(prompt_id), detail=False)
        except FileNotFoundError:
            return
        now = time.time_ns()
        for entry in entries:
            name = entry.rstrip("/").rsplit("/", 1)[-1]
            match = VERSION.fullmatch(name) or POINTER_TEMP.fullmatch(name)
            if match is None or name == current or name in replaced:
                continue
            if now - int(match.group(1)) > STALE_AFTER_S * 1e9:
                log.info("removing leftover %s of prompt %s from the store", name, prompt_id)
                self._remove(prompt_id, name)


def _safetensors_metadata(blob: bytes) -> dict[str, str]:
    header_len = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + header_len])
    if not isinstance(header, dict):
        raise ValueError("the features file's header is not a JSON object")
    metadata: dict[str, str] = header.get("__metadata__") or {}
    return metadata
