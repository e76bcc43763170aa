"""Prompt-artifact registry wire schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class RegisterPromptRequest(BaseModel):
    """Body of `POST /v1/prompts`: an artifact as written by `promptserve import`."""

    model_config = ConfigDict(extra="forbid")

    manifest: dict[str, Any] = Field(description="Contents of the artifact's manifest.json.")
    tensors: str | None = Field(
        None, description="Base64 of the artifact's prompt.safetensors (absent for templates)."
    )
    prompt_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        description="Name to serve it under; defaults to `<method>-<content id prefix>`.",
    )


class PromptInfo(BaseModel):
    """A registered prompt artifact."""

    prompt_id: str
    content_id: str = Field(description="sha256 of the artifact's manifest and tensors.")
    method: str
    task: str
    backbone: str = Field(description="Id of the backbone the artifact was built for.")
    num_classes: int | None = Field(None, description="Class count, for tasks with classes.")
    classnames: list[str] | None = Field(
        None, description="The labels results index, for tasks with classes."
    )
    created_at: datetime | None = None
    registered_at: datetime


class PromptList(BaseModel):
    """Body returned by `GET /v1/prompts`."""

    data: list[PromptInfo]
