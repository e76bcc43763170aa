"""Wire schemas shared by the SDK and the server: one definition of every request and response."""

from promptserve.types.anomaly import (
    AnomalyRequest,
    AnomalyResponse,
    EncodedArray,
    ImageAnomaly,
)
from promptserve.types.classification import (
    ClassifyRequest,
    ClassifyResponse,
    ImageClassification,
    LabelScore,
)
from promptserve.types.errors import ErrorBody, ErrorDetail, ErrorType
from promptserve.types.models import ImageGeometry, ModelInfo
from promptserve.types.prompts import PromptInfo, PromptList, RegisterPromptRequest
from promptserve.types.segment import (
    ClassScore,
    ImageSegmentation,
    LabelMap,
    SegmentRequest,
    SegmentResponse,
)

__all__ = [
    "AnomalyRequest",
    "AnomalyResponse",
    "ClassScore",
    "ClassifyRequest",
    "ClassifyResponse",
    "EncodedArray",
    "ErrorBody",
    "ErrorDetail",
    "ErrorType",
    "ImageAnomaly",
    "ImageClassification",
    "ImageGeometry",
    "ImageSegmentation",
    "LabelMap",
    "LabelScore",
    "ModelInfo",
    "PromptInfo",
    "PromptList",
    "RegisterPromptRequest",
    "SegmentRequest",
    "SegmentResponse",
]
