"""Where retrieval indexes live: the `index` section of the app config.

Example (YAML), embedded (the default: nothing to run besides promptserve):
    index: {engine: qdrant-edge, path: /var/lib/promptserve/indexes}
and on a Qdrant server or cluster, for corpora that outgrow one machine:
    index: {engine: qdrant, url: http://qdrant.qdrant.svc:6333, api_key_env: QDRANT_API_KEY,
            catalog: /shared/promptserve/index-catalog, exact: false}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

EMBEDDED = frozenset({"qdrant-edge"})
LOCAL_URLS = (":memory:", "path:")  # qdrant-client's in-process local mode


class IndexEngineConfig(BaseModel):
    """The index engine. `qdrant-edge` (default) is Qdrant's Rust storage engine in-process
    (qdrant-edge-py): no server, one shard directory per index under `path`. `qdrant` is a
    Qdrant server or cluster at `url`, through qdrant-client: the same layout (a named dense
    and a named sparse vector per point), sharded and replicated by Qdrant. docs/retrieval.md
    ("Choosing the index engine") has the measurements behind the choice."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Literal["qdrant-edge", "qdrant"] = Field(
        "qdrant-edge",
        description="qdrant-edge: embedded, files under `path`, owned by one indexer replica. "
        "qdrant: a Qdrant server or cluster at `url`; the indexer is then a stateless client.",
    )
    path: str = Field(
        default_factory=lambda: str(Path.home() / ".cache" / "promptserve" / "indexes"),
        description="qdrant-edge: the directory holding one shard per index (and the catalog, "
        "unless `catalog` says otherwise).",
    )
    url: str | None = Field(
        None,
        description="qdrant: the server, e.g. http://qdrant.qdrant.svc:6333. ':memory:' or "
        "'path:<dir>' run qdrant-client's in-process local mode instead (the same client "
        "calls without a server: tests and demos; exact search only, slow past ~10k).",
    )
    api_key_env: str | None = Field(
        "QDRANT_API_KEY",
        description="qdrant: the environment variable holding the server's API key (unset or "
        "empty: no key). A name, so the key never sits in a config file.",
    )
    collection_prefix: str = Field(
        "promptserve-",
        pattern=r"^[A-Za-z0-9._-]{0,64}$",
        description="qdrant: an index is the collection <prefix><index_id>, so the other "
        "collections of a shared server are never listed or touched.",
    )
    catalog: str | None = Field(
        None,
        description="Where the index records (which backbone and prompt built each index) "
        "are kept; default <path>/catalog. With several indexer replicas (engine qdrant) give "
        "a directory they share.",
    )
    sparse_scale: int | None = Field(
        100,
        ge=1,
        description="Sparse weights are stored and queried as rint(weight x scale): the "
        "integer impacts the official PromptReps runs give pyserini, so sparse scores (and "
        "hybrid rankings) equal the official ones. null stores float weights (exact float "
        "inner products, scores no longer pyserini's).",
    )
    exact: bool = Field(
        True,
        description="Exact dense search: every document scored, as faiss IndexFlatIP in the "
        "official runs (parity). false (engine qdrant only): the server's HNSW index, "
        "approximate (recall below 1) and much faster on millions of documents. Sparse "
        "search is exact either way.",
    )
    shards: int | None = Field(
        None,
        ge=1,
        description="qdrant: shards of a new index's collection, spread over the cluster's "
        "nodes (None: the server's default, one per node).",
    )
    replication_factor: int | None = Field(
        None, ge=1, description="qdrant: copies of each shard (None: the server's default)."
    )
    timeout_s: float = Field(30.0, gt=0, description="qdrant: per request to the server.")

    @model_validator(mode="after")
    def _engine_fits(self) -> IndexEngineConfig:
        if self.engine == "qdrant" and not self.url:
            raise ValueError(
                "index.engine qdrant needs index.url (e.g. http://qdrant:6333, or ':memory:' "
                "for qdrant-client's local mode)"
            )
        if self.engine == "qdrant-edge" and self.url:
            raise ValueError("index.url is for engine qdrant; qdrant-edge keeps its files in path")
        if self.engine == "qdrant-edge" and not self.exact:
            raise ValueError(
                "index.exact false needs engine qdrant: an embedded shard has no background "
                "optimizer to build and maintain an HNSW graph"
            )
        return self

    @property
    def embedded(self) -> bool:
        """The engine keeps its data in the indexer's process, so one replica owns it."""
        return self.engine in EMBEDDED or (self.url or "").startswith(LOCAL_URLS)

    def catalog_root(self) -> str:
        return self.catalog or str(Path(self.path).expanduser() / "catalog")

    def data_root(self) -> Path:
        return Path(self.path).expanduser()
