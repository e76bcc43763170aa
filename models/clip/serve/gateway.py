"""The CLIP gateway: the common gateway (serving/gateway.py) with one route module per task."""

from __future__ import annotations

from ray import serve

from promptserve.models.clip.serve.anomaly import AnomalyRoutes
from promptserve.models.clip.serve.classify import ClassifyRoutes
from promptserve.models.clip.serve.segment import SegmentRoutes
from promptserve.serving.api import create_api, mount
from promptserve.serving.routes.health import HealthRoutes
from promptserve.serving.routes.prompts import PromptRoutes
from promptserve.types import AnomalyRequest, ClassifyRequest, SegmentRequest


class ClipGatewayDeployment(
    ClassifyRoutes, AnomalyRoutes, SegmentRoutes, HealthRoutes, PromptRoutes
):
    """Classify, anomaly and segment routes over one CLIP bundle."""


api = create_api(
    description="Prompt-adapted CLIP models behind one batched backbone.",
    bodies=(ClassifyRequest, AnomalyRequest, SegmentRequest),
)
mount(api, ClipGatewayDeployment)
# Applied at import time (not in build_app) so replicas, which import this module afresh,
# see the same class-based routes as the driver that pickled the app.
GatewayIngress = serve.ingress(api)(ClipGatewayDeployment)
