"""Where retrieval indexes live: the `index` section of the app config."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

EMBEDDED = frozenset({"qdrant-edge"})


class IndexEngineConfig(BaseModel):
    """The index engine. `qdrant-edge` (default) is Qdrant's storage engine in-process: no
    server, files under `path`. `qdrant` is a Qdrant server or cluster at `url`, through
    qdrant-client: the same collections (named dense + sparse vectors), for corpora that
    outgrow one machine (docs/retrieval.md says how the two were chosen)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Literal["qdrant-edge", "qdrant"] = "qdrant-edge"
    path: str = Field(
        default_factory=lambda: str(Path.home() / ".cache" / "promptserve" / "indexes"),
        description="Embedded engine: the directory holding one shard per index (and the "
        "catalog, unless `catalog` says otherwise).",
    )
    url: str | None = Field(
        None, description="qdrant: the server, e.g. http://qdrant.qdrant.svc:6333."
    )
    api_key_env: str | None = Field(
        "QDRANT_API_KEY", description="qdrant: env var holding the server's API key, if any."
    )
    collection_prefix: str = Field(
        "promptserve-",
        pattern=r"^[A-Za-z0-9._-]{0,64}$",
        description="qdrant: collections are <prefix><index_id>, so a shared server's other "
        "collections are never touched.",
    )
    catalog: str | None = Field(
        None,
        description="Where the index records (which backbone and prompt built each index) are "
        "kept; default <path>/catalog. With several indexer replicas (qdrant engine) give a "
        "shared directory, e.g. on the data volume.",
    )
    sparse_scale: int | None = Field(
        100,
        ge=1,
        description="Sparse weights are stored as rint(weight x scale), the integer impact "
        "weights the official PromptReps runs index with pyserini, so sparse scores equal the "
        "official ones; null stores the float weights.",
    )
    exact: bool = Field(
        True,
        description="Exact dense search (the official runs use faiss IndexFlatIP). false: HNSW, "
        "approximate and faster on large indexes.",
    )
    timeout_s: float = Field(30.0, gt=0, description="qdrant: per request.")

    @model_validator(mode="after")
    def _server_needs_url(self) -> IndexEngineConfig:
        if self.engine == "qdrant" and not self.url:
            raise ValueError("index.engine qdrant needs index.url (e.g. http://qdrant:6333)")
        return self

    @property
    def embedded(self) -> bool:
        """The engine keeps its files in the indexer's process (one replica owns them)."""
        return self.engine in EMBEDDED

    def catalog_root(self) -> str:
        return self.catalog or str(Path(self.path).expanduser() / "catalog")

    def data_root(self) -> Path:
        return Path(self.path).expanduser()
