"""The index catalog: what built each index (backbone, prompt artifact), its size, when.

Kept apart from the vectors so that a request is checked (404, 409) before any engine call,
and so that an index moved to another engine keeps its identity. One JSON file per index,
written atomically (a temp file renamed over it), so a reader never sees half a record.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError


class IndexRecord(BaseModel):
    index_id: str
    backbone: str = Field(description="Backbone id of the bundle whose vectors it holds.")
    prompt_id: str
    prompt_content_id: str = Field(description="The exact prompt artifact that encoded it.")
    dim: int
    engine: str
    created_at: datetime
    documents: int = 0


class Catalog:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, index_id: str) -> Path:
        return self.root / f"{index_id}.json"

    def get(self, index_id: str) -> IndexRecord | None:
        try:
            return IndexRecord.model_validate_json(self._path(index_id).read_bytes())
        except FileNotFoundError:
            return None
        except ValidationError:  # a damaged record: not an index anyone can use
            return None

    def list(self) -> list[IndexRecord]:
        records = [self.get(p.stem) for p in sorted(self.root.glob("*.json"))]
        return [r for r in records if r is not None]

    def create(self, record: IndexRecord) -> None:
        self._write(record)

    def update(self, record: IndexRecord) -> None:
        self._write(record)

    def delete(self, index_id: str) -> None:
        self._path(index_id).unlink(missing_ok=True)

    def _write(self, record: IndexRecord) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(record.model_dump_json(indent=2).encode())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._path(record.index_id))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
