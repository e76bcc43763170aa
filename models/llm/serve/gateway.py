"""The LLM gateway: the common gateway (serving/deployments/gateway.py) with the embed,
index and retrieve routes, plus the common health and prompt-registry routes."""

from __future__ import annotations

from ray import serve

from promptserve.models.llm.serve.embed import EmbedRoutes
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


class LlmGatewayDeployment(EmbedRoutes, IndexRoutes, RetrieveRoutes, HealthRoutes, PromptRoutes):
    """PromptReps representations, indexes and retrieval over one causal-LM bundle."""


api = create_api(
    description="PromptReps retrieval: dense and sparse text representations from one frozen "
    "causal LM, indexes, and hybrid search.",
    bodies=(
        EmbedRequest,
        CreateIndexRequest,
        AddDocumentsRequest,
        DocumentIdsRequest,
        RetrieveRequest,
    ),
)
mount(api, LlmGatewayDeployment)
# Applied at import time, as the CLIP gateway does: replicas import this module afresh.
GatewayIngress = serve.ingress(api)(LlmGatewayDeployment)
