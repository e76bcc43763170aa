"""Open-vocabulary segmentation wire schemas: a label map per image, sent as a PNG (8-bit for
up to 256 classes, 16-bit above), not as JSON numbers."""

from __future__ import annotations

import base64
import io
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from promptserve.types.fields import NotABool

SegmentMethod = Literal["maskclip", "sclip", "clearclip"]


class SegmentRequest(BaseModel):
    """Body of `POST /v1/segment` (JSON form; multipart uploads carry the same fields): a
    vocabulary as free labels (each a name, or a list of synonyms for one class) or a
    registered text-prompt artifact (CoOp, KgCoOp, templates, CuPL) whose classes it is."""

    model_config = ConfigDict(extra="forbid")

    images: list[str] = Field(description="Base64-encoded image files (JPEG, PNG, WebP, ...).")
    labels: list[str | list[str]] | None = Field(
        None,
        description="Class names; a list gives several names for one class, which scores the "
        "best of them (SCLIP's name files). Put a background class first to use "
        "prob_threshold.",
    )
    prompt_id: str | None = Field(None, description="A registered text-prompt artifact.")
    templates: str | list[str] | None = Field(
        None, description="For labels: a preset (default imagenet80) or templates with `{}`."
    )
    method: SegmentMethod | None = Field(
        None, description="maskclip, sclip or clearclip; default: the first the server has."
    )
    short_side: Annotated[int, Field(ge=16, le=2048), NotABool] | None = Field(
        None, description="Resize so the short side is this (method default)."
    )
    stride: Annotated[int, Field(ge=1), NotABool] | None = Field(
        None, description="Sliding-window stride in pixels (default: half the window)."
    )
    logit_scale: float | None = Field(
        None, gt=0, description="Softmax temperature (default: the method's)."
    )
    prob_threshold: float = Field(
        0.0, ge=0, le=1, description="Pixels whose best probability is below get class 0."
    )
    return_scores: bool = Field(False, description="Also return per-class area and confidence.")

    @model_validator(mode="after")
    def _one_vocabulary(self) -> SegmentRequest:
        if (self.prompt_id is None) == (self.labels is None):
            raise ValueError("give exactly one of `labels` or `prompt_id`")
        return self


class LabelMap(BaseModel):
    """A [height, width] class-index map as a grayscale PNG (base64)."""

    shape: list[int]
    data: str = Field(description="base64 of a PNG, 8-bit (L) or 16-bit (I;16) grayscale")

    @classmethod
    def from_numpy(cls, labels: np.ndarray) -> LabelMap:
        from PIL import Image

        if labels.max(initial=0) > 65535:
            raise ValueError("more than 65536 classes do not fit a 16-bit PNG")
        if labels.max(initial=0) < 256:
            img = Image.fromarray(labels.astype(np.uint8), mode="L")
        else:
            img = Image.fromarray(labels.astype(np.uint16), mode="I;16")
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=False, compress_level=6)
        return cls(shape=list(labels.shape), data=base64.b64encode(buf.getvalue()).decode())

    def to_numpy(self) -> np.ndarray:
        from PIL import Image

        img = Image.open(io.BytesIO(base64.b64decode(self.data)))
        return np.asarray(img).astype(np.int64).reshape(self.shape)


class ClassScore(BaseModel):
    index: int
    label: str
    area: float = Field(description="Fraction of the image's pixels labelled with this class.")
    confidence: float = Field(description="Mean winning probability over those pixels.")


class ImageSegmentation(BaseModel):
    """Result for one input image, in input order."""

    index: int = Field(description="Position of the image in the request.")
    label_map: LabelMap = Field(description="Class index per pixel, at the image's original size.")
    scores: list[ClassScore] | None = Field(
        None, description="Per class, with return_scores: classes present, largest first."
    )

    def labels(self) -> np.ndarray:
        """The label map as int64 [height, width] (indices into the response's `labels`)."""
        return self.label_map.to_numpy()


class SegmentResponse(BaseModel):
    """Body returned by `POST /v1/segment`."""

    prompt_id: str | None = None
    method: str
    backbone: str = Field(description="Id of the backbone that served the request.")
    labels: list[str] = Field(description="Class names; a label map's values index this list.")
    results: list[ImageSegmentation]
