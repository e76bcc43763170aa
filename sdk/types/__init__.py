"""Wire schemas shared by the SDK and the server: one definition of every request and response."""

from promptserve.types.classification import (
    ClassifyRequest,
    ClassifyResponse,
    ImageClassification,
    LabelScore,
)
from promptserve.types.errors import ErrorBody, ErrorDetail, ErrorType
from promptserve.types.models import ImageGeometry, ModelInfo
from promptserve.types.prompts import PromptInfo, PromptList, RegisterPromptRequest

__all__ = [
    "ClassifyRequest",
    "ClassifyResponse",
    "ErrorBody",
    "ErrorDetail",
    "ErrorType",
    "ImageClassification",
    "ImageGeometry",
    "LabelScore",
    "ModelInfo",
    "PromptInfo",
    "PromptList",
    "RegisterPromptRequest",
]
