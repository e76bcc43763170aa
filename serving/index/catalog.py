"""The index catalog: what built each index (backbone, prompt artifact), its size, when.

Kept apart from the vectors so that a request is checked (404, 409) before any engine call,
and so that an index moved to another engine keeps its identity. One JSON file per index
under `root`: a record is created with an exclusive link (two replicas creating one index
id: one wins, the other gets 409) and replaced by a rename, so a reader sees the old record
or the new one, never half of one (the prompt store's rule, serving/store.py).
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from promptserve.serving.errors import Conflict, IndexNotFound, InvalidInput
from promptserve.serving.index.base import INDEX_ID, check_name

log = logging.getLogger(__name__)


class IndexRecord(BaseModel):
    """One index: its name, what encoded its vectors, and its counts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index_id: str = Field(description="The index's name, 1-64 of [A-Za-z0-9._-].")
    backbone: str = Field(description="Backbone id of the bundle whose vectors it holds.")
    prompt_id: str = Field(description="The prompt artifact that encoded the documents.")
    prompt_content_id: str = Field(
        description="That artifact's content id: queries must be encoded by the same one."
    )
    dim: int = Field(gt=0, description="Dense vector width.")
    engine: str = Field(description="The index engine holding the vectors.")
    created_at: datetime
    documents: int = Field(0, ge=0, description="Documents in the index now.")
    deleted: int = Field(0, ge=0, description="Documents removed by deletes since creation.")
    updated_at: datetime | None = Field(None, description="Last write (add or delete).")

    @field_validator("index_id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not INDEX_ID.fullmatch(value):
            raise ValueError(
                "1-64 letters, digits, '.', '_' or '-', starting with one of the first two"
            )
        return value


class Catalog:
    """The index records in one directory (local, or a volume the indexer replicas share)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, index_id: str) -> Path:
        return self.root / f"{check_name(index_id)}.json"

    def get(self, index_id: str) -> IndexRecord | None:
        """The record, or None if there is none. A record that no longer parses is logged
        and treated as absent (its file stays, so `create` refuses the id: 409)."""
        try:
            return IndexRecord.model_validate_json(self._path(index_id).read_bytes())
        except FileNotFoundError:
            return None
        except ValidationError as exc:
            log.error("index record %s is damaged, not served: %s", index_id, exc)
            return None

    def require(self, index_id: str) -> IndexRecord:
        """The record; IndexNotFound (404) if there is none."""
        record = self.get(index_id)
        if record is None:
            raise IndexNotFound(
                f"index {index_id!r} does not exist; create it with POST /v1/indexes "
                "(GET /v1/indexes lists them)",
                param="index_id",
            )
        return record

    def list(self) -> list[IndexRecord]:
        """Every readable record, by index id."""
        records = []
        for path in sorted(self.root.glob("*.json")):
            if path.name.startswith("."):
                continue
            try:
                record = self.get(path.stem)
            except InvalidInput:  # not an index id: not a record of ours
                continue
            if record is not None:
                records.append(record)
        return records

    def create(self, record: IndexRecord) -> None:
        """Add a record; Conflict (409) if the index id has one (even a damaged one)."""
        temp = self._temp(record)
        try:
            os.link(temp, self._path(record.index_id))  # atomic, fails if the name exists
        except FileExistsError:
            raise Conflict(
                f"index {record.index_id!r} exists; delete it first or choose another index_id",
                param="index_id",
            ) from None
        finally:
            temp.unlink(missing_ok=True)

    def update(self, record: IndexRecord) -> None:
        """Replace a record (the counts after a write); IndexNotFound if it was deleted."""
        path = self._path(record.index_id)
        if not path.exists():
            raise IndexNotFound(f"index {record.index_id!r} was deleted", param="index_id")
        temp = self._temp(record)
        try:
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)

    def update_counts(self, index_id: str, *, documents: int, deleted: int = 0) -> IndexRecord:
        """Set the document count after a write and add `deleted` to the deletions."""
        record = self.require(index_id)
        updated = record.model_copy(
            update={
                "documents": documents,
                "deleted": record.deleted + deleted,
                "updated_at": datetime.now(timezone.utc),
            }
        )
        self.update(updated)
        return updated

    def delete(self, index_id: str) -> bool:
        """Remove a record; whether there was one."""
        try:
            self._path(index_id).unlink()
        except FileNotFoundError:
            return False
        return True

    def _temp(self, record: IndexRecord) -> Path:
        """The record written and synced under a temporary name in the same directory."""
        fd, name = tempfile.mkstemp(dir=self.root, prefix=f".{uuid.uuid4().hex}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(record.model_dump_json(indent=2).encode())
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        return Path(name)
