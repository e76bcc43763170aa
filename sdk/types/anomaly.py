"""Anomaly-detection wire schemas: an image score and a dense map per image, the map sent as a
compact array (float16 bytes in base64), not as JSON numbers."""

from __future__ import annotations

import base64
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from promptserve.types.fields import NotABool

MAX_OBJECT_NAME_CHARS = 64  # WinCLIP's longest template leaves room for this in 77 tokens


class AnomalyRequest(BaseModel):
    """Body of `POST /v1/anomaly` (JSON form; multipart uploads carry the same fields): one of
    `prompt_id` (a learned, object-agnostic prompt: AnomalyCLIP) or `object_name` (WinCLIP's
    training-free prompt ensemble for that object)."""

    model_config = ConfigDict(extra="forbid")

    images: list[str] = Field(description="Base64-encoded image files (JPEG, PNG, WebP, ...).")
    prompt_id: str | None = Field(
        None, description="A registered anomaly-detection artifact (AnomalyCLIP)."
    )
    object_name: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_OBJECT_NAME_CHARS,
        description="What the images show, e.g. 'bottle': scored zero-shot by WinCLIP.",
    )
    max_map_side: Annotated[int, Field(ge=16, le=16384), NotABool] | None = Field(
        None,
        description="Return each map with its longer side at most this (aspect kept); default: "
        "the image's original size. The server bounds the map pixels of one response.",
    )

    @model_validator(mode="after")
    def _one_prompt(self) -> AnomalyRequest:
        if (self.prompt_id is None) == (self.object_name is None):
            raise ValueError(
                "give exactly one of `prompt_id` (a registered AnomalyCLIP prompt) and "
                "`object_name` (WinCLIP, e.g. 'bottle')"
            )
        if self.object_name is not None and not self.object_name.strip():
            raise ValueError("`object_name` is blank")
        return self

    @property
    def method(self) -> Literal["anomalyclip", "winclip"]:
        return "winclip" if self.object_name is not None else "anomalyclip"


class EncodedArray(BaseModel):
    """A numpy array on the wire: little-endian bytes of `dtype`, base64, C order."""

    shape: list[int]
    dtype: Literal["float16", "uint8"]
    data: str = Field(description="base64 of the array's bytes")

    @classmethod
    def from_numpy(cls, array: np.ndarray, dtype: Literal["float16", "uint8"]) -> EncodedArray:
        a = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
        return cls(shape=list(a.shape), dtype=dtype, data=base64.b64encode(a.tobytes()).decode())

    def to_numpy(self) -> np.ndarray:
        raw = base64.b64decode(self.data)
        return np.frombuffer(raw, dtype=np.dtype(self.dtype).newbyteorder("<")).reshape(self.shape)


class ImageAnomaly(BaseModel):
    """Result for one input image, in input order."""

    index: int = Field(description="Position of the image in the request.")
    score: float = Field(description="Image-level anomaly score in [0, 1].")
    map: EncodedArray = Field(
        description="Pixel anomaly map [height, width] in [0, 1], at the image's original size "
        "(or scaled down to the request's max_map_side)."
    )

    def anomaly_map(self) -> np.ndarray:
        """The map as float32 [height, width]."""
        return self.map.to_numpy().astype(np.float32)


class AnomalyResponse(BaseModel):
    """Body returned by `POST /v1/anomaly`."""

    prompt_id: str | None = None
    object_name: str | None = None
    method: str = Field(description="The method that scored the images: anomalyclip or winclip.")
    backbone: str = Field(description="Id of the backbone that served the request.")
    results: list[ImageAnomaly]
