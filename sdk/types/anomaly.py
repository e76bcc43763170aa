"""Anomaly-detection wire schemas: an image score and a dense map per image, the map sent as a
compact array (float16 bytes in base64), not as JSON numbers."""

from __future__ import annotations

import base64
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class AnomalyRequest(BaseModel):
    """Body of `POST /v1/anomaly` (JSON form; multipart uploads carry the same fields)."""

    model_config = ConfigDict(extra="forbid")

    images: list[str] = Field(description="Base64-encoded image files (JPEG, PNG, WebP, ...).")
    prompt_id: str = Field(description="A registered anomaly-detection artifact (AnomalyCLIP).")


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
        description="Pixel anomaly map [height, width] at the image's original size, in [0, 1]."
    )

    def anomaly_map(self) -> np.ndarray:
        """The map as float32 [height, width]."""
        return self.map.to_numpy().astype(np.float32)


class AnomalyResponse(BaseModel):
    """Body returned by `POST /v1/anomaly`."""

    prompt_id: str
    backbone: str = Field(description="Id of the backbone that served the request.")
    results: list[ImageAnomaly]
