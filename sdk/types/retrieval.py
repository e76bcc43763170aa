"""Retrieval wire schemas: representations (`/v1/embed`), indexes and their documents
(`/v1/indexes`), and search (`/v1/retrieve`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from promptserve.types.fields import Integer

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
Kind = Literal["query", "passage"]
Mode = Literal["dense", "sparse", "hybrid", "rrf"]


class EmbedRequest(BaseModel):
    """Body of `POST /v1/embed`: the dense and sparse representations of texts, for users
    with their own vector store."""

    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(min_length=1, description="Texts to represent, in order.")
    prompt_id: str = Field(description="A registered representation prompt (e.g. PromptReps).")
    kind: Kind = Field(
        "query", description="Which side of the prompt to use: queries and passages differ."
    )
    dense: bool = Field(True, description="Return the dense vector.")
    sparse: bool = Field(True, description="Return the sparse vector (vocabulary id -> weight).")
    sparse_tokens: bool = Field(False, description="Also return each sparse id's token string.")


class SparseEmbedding(BaseModel):
    """A bag of vocabulary ids with weights, best first."""

    indices: list[int]
    values: list[float]
    tokens: list[str] | None = Field(None, description="Token strings, when asked for.")


class Embedding(BaseModel):
    index: int = Field(description="Position of the text in the request.")
    dense: list[float] | None = None
    sparse: SparseEmbedding | None = None
    tokens: int = Field(description="Tokens of the text the model read (after truncation).")
    truncated: bool = Field(
        description="The text was longer than the prompt's max length and was cut, as the "
        "official code does (only its first tokens were read)."
    )


class EmbedResponse(BaseModel):
    prompt_id: str
    backbone: str
    kind: Kind
    data: list[Embedding]


class CreateIndexRequest(BaseModel):
    """Body of `POST /v1/indexes`."""

    model_config = ConfigDict(extra="forbid")

    index_id: str = Field(pattern=ID_PATTERN, description="Name of the new index.")
    prompt_id: str = Field(
        description="The representation prompt documents and queries are encoded with; the "
        "index is tied to it (and to this server's backbone)."
    )


class IndexInfo(BaseModel):
    index_id: str
    backbone: str = Field(description="Backbone its vectors came from.")
    prompt_id: str
    prompt_content_id: str = Field(description="The exact prompt artifact its vectors came from.")
    dim: int = Field(description="Dense vector width.")
    engine: str = Field(description="The index engine holding it.")
    documents: int = Field(description="Documents in the index.")
    deleted: int = Field(0, description="Documents deleted from it so far.")
    created_at: datetime
    updated_at: datetime | None = Field(None, description="Its last write.")


class IndexList(BaseModel):
    data: list[IndexInfo]


class Document(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=512, description="Your document id (unique).")
    text: str = Field(min_length=1, description="The passage text.")
    title: str | None = Field(
        None, description="Prepended to the text as the official code does: `title text`."
    )


class AddDocumentsRequest(BaseModel):
    """Body of `POST /v1/indexes/{index_id}/documents`: all documents are encoded, then all
    are written; nothing is written if any is refused."""

    model_config = ConfigDict(extra="forbid")

    documents: list[Document] = Field(min_length=1)


class AddDocumentsResponse(BaseModel):
    index_id: str
    added: int = Field(description="Documents written (an id already present is replaced).")
    truncated: list[str] = Field(
        default_factory=list, description="Ids whose text was cut at the prompt's max length."
    )
    documents: int = Field(description="Documents in the index after this call.")


class DocumentIdsRequest(BaseModel):
    """Body of `POST /v1/indexes/{index_id}/documents/delete` and `.../lookup`."""

    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(min_length=1)


class DeleteDocumentsResponse(BaseModel):
    index_id: str
    deleted: int = Field(description="How many of the ids were in the index.")
    documents: int


class LookupDocumentsResponse(BaseModel):
    index_id: str
    present: list[str] = Field(description="The asked ids that are in the index.")


class RetrieveRequest(BaseModel):
    """Body of `POST /v1/retrieve`."""

    model_config = ConfigDict(extra="forbid")

    queries: list[str] = Field(min_length=1)
    index_id: str
    k: Integer = Field(10, ge=1, description="Documents per query.")
    mode: Mode = Field(
        "hybrid",
        description="dense, sparse (impact search), hybrid (PromptReps: per-query min-max "
        "normalised scores, alpha*dense + (1-alpha)*sparse), or rrf (reciprocal rank fusion).",
    )
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the dense run in hybrid.")
    depth: Integer | None = Field(
        None,
        ge=1,
        description="Candidates each run contributes to a fusion (the official runs fuse "
        "1000); default: the server's limit or k, whichever is larger.",
    )


class Hit(BaseModel):
    id: str
    score: float


class QueryResult(BaseModel):
    index: int = Field(description="Position of the query in the request.")
    hits: list[Hit] = Field(description="Best first.")
    truncated: bool = Field(description="The query was cut at the prompt's max length.")


class RetrieveResponse(BaseModel):
    index_id: str
    mode: Mode
    results: list[QueryResult]
