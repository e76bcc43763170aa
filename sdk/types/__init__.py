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
from promptserve.types.retrieval import (
    AddDocumentsRequest,
    AddDocumentsResponse,
    CreateIndexRequest,
    DeleteDocumentsResponse,
    Document,
    DocumentIdsRequest,
    Embedding,
    EmbedRequest,
    EmbedResponse,
    Hit,
    IndexInfo,
    IndexList,
    LookupDocumentsResponse,
    QueryResult,
    RetrieveRequest,
    RetrieveResponse,
    SparseEmbedding,
)
from promptserve.types.segment import (
    ClassScore,
    ImageSegmentation,
    LabelMap,
    SegmentRequest,
    SegmentResponse,
)

__all__ = [
    "AddDocumentsRequest",
    "AddDocumentsResponse",
    "AnomalyRequest",
    "AnomalyResponse",
    "ClassScore",
    "ClassifyRequest",
    "ClassifyResponse",
    "CreateIndexRequest",
    "DeleteDocumentsResponse",
    "Document",
    "DocumentIdsRequest",
    "EmbedRequest",
    "EmbedResponse",
    "Embedding",
    "EncodedArray",
    "ErrorBody",
    "ErrorDetail",
    "ErrorType",
    "Hit",
    "ImageAnomaly",
    "ImageClassification",
    "ImageGeometry",
    "ImageSegmentation",
    "IndexInfo",
    "IndexList",
    "LabelMap",
    "LabelScore",
    "LookupDocumentsResponse",
    "ModelInfo",
    "PromptInfo",
    "PromptList",
    "QueryResult",
    "RegisterPromptRequest",
    "RetrieveRequest",
    "RetrieveResponse",
    "SegmentRequest",
    "SegmentResponse",
    "SparseEmbedding",
]
