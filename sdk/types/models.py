"""What the server serves, so clients can adapt (e.g. downscale images before upload)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from promptserve.types.generation import GenModel


class ImageGeometry(BaseModel):
    size: int = Field(
        description="Square model input size; images are resized (shortest side) and center-cropped to it."
    )
    interpolation: str = Field(description="Resize filter, e.g. bicubic.")
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class ModelInfo(BaseModel):
    """Body returned by `GET /v1/models`."""

    backbone: str = Field(description="Id of the served backbone.")
    family: str = Field("clip", description="The model family: clip or llm.")
    embed_dim: int = Field(description="Width of the dense vectors (image/text embeddings).")
    engine: str = Field(description="torch, onnxruntime or triton.")
    image: ImageGeometry | None = Field(None, description="Input geometry (image families).")
    max_images_per_request: int | None = None
    max_texts_per_request: int | None = Field(
        None, description="Text families: texts a call takes."
    )
    vocab_size: int | None = Field(None, description="Text families: sparse vector id range.")
    max_body_bytes: int
    tasks: list[str]
    anomaly_methods: list[str] = Field(
        default_factory=list,
        description="Anomaly methods the bundle's dense graphs serve: anomalyclip, winclip.",
    )
    segment_methods: list[str] = Field(
        default_factory=list,
        description="Segmentation methods the bundle's dense graphs serve: maskclip, sclip, ...",
    )
    # OpenAI's model list, on servers that generate: `openai.models.list()` reads these two
    object: Literal["list"] | None = Field(
        None, description="`list` where `data` lists the generation models."
    )
    data: list[GenModel] | None = Field(
        None, description="Generation: the ids `model` may name (OpenAI's model list)."
    )
