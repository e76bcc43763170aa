"""promptserve: serve prompt-adapted foundation models. This module is the typed client SDK.

Example:
    >>> import promptserve
    >>> with promptserve.Client("http://127.0.0.1:8000") as client:
    ...     out = client.classify("cat.jpg", labels=["cat", "dog"])
    >>> out.results[0].top[0].label
    'cat'
"""

__version__ = "0.1.0"

from promptserve._client import AsyncClient, Client
from promptserve._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthError,
    BackboneMismatch,
    InternalServerError,
    InvalidInput,
    NotFoundError,
    PromptNotFound,
    PromptServeError,
    ServerOverloaded,
)
from promptserve.types import (
    ClassifyRequest,
    ClassifyResponse,
    ErrorBody,
    ErrorDetail,
    ErrorType,
    ImageClassification,
    ImageGeometry,
    LabelScore,
    ModelInfo,
    PromptInfo,
    PromptList,
    RegisterPromptRequest,
)

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AuthError",
    "BackboneMismatch",
    "ClassifyRequest",
    "ClassifyResponse",
    "Client",
    "ErrorBody",
    "ErrorDetail",
    "ErrorType",
    "ImageClassification",
    "ImageGeometry",
    "InternalServerError",
    "InvalidInput",
    "LabelScore",
    "ModelInfo",
    "NotFoundError",
    "PromptInfo",
    "PromptList",
    "PromptNotFound",
    "PromptServeError",
    "RegisterPromptRequest",
    "ServerOverloaded",
    "__version__",
]
