"""The LLM gateway: the common gateway (serving/deployments/gateway.py) with the embed,
index and retrieve routes, plus the common health and prompt-registry routes."""

from __future__ import annotations

from ray import serve

from promptserve.models.llm.serve.embed import EmbedRoutes
from promptserve.models.llm.serve.generate import GenerateRoutes
from promptserve.models.llm.serve.indexes import IndexRoutes
from promptserve.models.llm.serve.retrieve import RetrieveRoutes
from promptserve.serving.api import create_api, mount
from promptserve.serving.routes.health import HealthRoutes
from promptserve.serving.routes.prompts import PromptRoutes
from promptserve.types import (
    AddDocumentsRequest,
    CreateIndexRequest,
    DocumentIdsRequest,
    EmbedRequest,
    RetrieveRequest,
)
from promptserve.types.generation import ChatCompletionRequest, CompletionRequest


class LlmGatewayDeployment(
    EmbedRoutes, IndexRoutes, RetrieveRoutes, GenerateRoutes, HealthRoutes, PromptRoutes
):
    """PromptReps representations, indexes and retrieval, and generation with soft prompts,
    IDP pools and hard prompts, over one causal-LM bundle."""


api = create_api(
    description="One frozen causal LM: PromptReps retrieval (dense and sparse text "
    "representations, indexes, hybrid search) and OpenAI-compatible generation with soft "
    "prompts, IDP prompt pools and hard prompts.",
    bodies=(
        EmbedRequest,
        CreateIndexRequest,
        AddDocumentsRequest,
        DocumentIdsRequest,
        RetrieveRequest,
        CompletionRequest,
        ChatCompletionRequest,
    ),
)
mount(api, LlmGatewayDeployment)
# Applied at import time, as the CLIP gateway does: replicas import this module afresh.
GatewayIngress = serve.ingress(api)(LlmGatewayDeployment)
