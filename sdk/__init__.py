"""promptserve: serve prompt-adapted foundation models. This module is the typed client SDK.

Example:
    >>> import promptserve
    >>> with promptserve.Client("http://127.0.0.1:8000") as client:
    ...     out = client.classify("cat.jpg", labels=["cat", "dog"])
    >>> out.results[0].top[0].label
    'cat'
"""

from promptserve._client import AsyncClient, Client
from promptserve._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthError,
    BackboneMismatch,
    ConflictError,
    IndexMismatch,
    IndexNotFound,
    InternalServerError,
    InvalidInput,
    NotFoundError,
    PromptNotFound,
    PromptServeError,
    ServerOverloaded,
)
from promptserve._generation import AsyncStream, Stream
from promptserve._version import __version__
from promptserve.overlay import heatmap, overlay, segment_overlay
from promptserve.types import (
    AnomalyRequest,
    AnomalyResponse,
    ClassifyRequest,
    ClassifyResponse,
    EncodedArray,
    ErrorBody,
    ErrorDetail,
    ErrorType,
    ImageAnomaly,
    ImageClassification,
    ImageGeometry,
    LabelScore,
    ModelInfo,
    PromptInfo,
    PromptList,
    RegisterPromptRequest,
    SegmentRequest,
    SegmentResponse,
)
from promptserve.types.generation import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessage,
    Completion,
    GenModelList,
    PromptSelection,
)

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AnomalyRequest",
    "AnomalyResponse",
    "AsyncClient",
    "AsyncStream",
    "AuthError",
    "BackboneMismatch",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatMessage",
    "ClassifyRequest",
    "ClassifyResponse",
    "Client",
    "Completion",
    "ConflictError",
    "EncodedArray",
    "ErrorBody",
    "ErrorDetail",
    "ErrorType",
    "GenModelList",
    "ImageAnomaly",
    "ImageClassification",
    "ImageGeometry",
    "IndexMismatch",
    "IndexNotFound",
    "InternalServerError",
    "InvalidInput",
    "LabelScore",
    "ModelInfo",
    "NotFoundError",
    "PromptInfo",
    "PromptList",
    "PromptNotFound",
    "PromptSelection",
    "PromptServeError",
    "RegisterPromptRequest",
    "SegmentRequest",
    "SegmentResponse",
    "ServerOverloaded",
    "Stream",
    "__version__",
    "heatmap",
    "overlay",
    "segment_overlay",
]
