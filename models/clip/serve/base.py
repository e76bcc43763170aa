"""What the CLIP task routes share on top of the common gateway: the bundle's CLIP section,
the capability gate, and the model description."""

from __future__ import annotations

from typing import Any

from promptserve.models.clip.bundle import clip_config
from promptserve.models.clip.capabilities import CapabilityError, check_prompt, require_graph
from promptserve.models.clip.templates import resolve_templates
from promptserve.serving.auth import ApiKeys
from promptserve.serving.config import LimitsConfig
from promptserve.serving.deployments.gateway import Gateway
from promptserve.serving.errors import InvalidInput
from promptserve.types import ImageGeometry, ModelInfo, PromptInfo

BATCH_HEADER = "x-promptserve-batch-images"


class ClipGateway(Gateway):
    def __init__(
        self,
        config: Any,
        encoder: Any | None,
        keys: ApiKeys,
        services: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(config, encoder, keys, services)
        self.clip = clip_config(self.bundle)
        # segmentation pads windows past an image's edge with the mean colour (0 once normalised)
        self.fill = tuple(round(255 * m) for m in self.clip.preprocess.mean)

    def check_capability(self, task: str, info: PromptInfo) -> None:
        try:
            check_prompt(task, info.method, self.bundle.manifest.graphs, prompt_id=info.prompt_id)
        except (CapabilityError, ValueError) as exc:
            raise InvalidInput(str(exc), param=getattr(exc, "param", "prompt_id")) from None

    def require_graph(self, graph: str, *, what: str, param: str) -> None:
        try:
            require_graph(self.bundle.manifest.graphs, graph, what=what, param=param)
        except CapabilityError as exc:
            raise InvalidInput(str(exc), param=exc.param) from None

    def model_info(self) -> ModelInfo:
        from promptserve.models.clip.capabilities import served_tasks

        cfg, pre, graphs = self.clip, self.clip.preprocess, self.bundle.manifest.graphs
        return ModelInfo(
            backbone=self.bundle.backbone_id,
            embed_dim=cfg.embed_dim,
            engine=self.config.engine.name,
            image=ImageGeometry(
                size=pre.size, interpolation=pre.interpolation, mean=pre.mean, std=pre.std
            ),
            max_images_per_request=self.config.limits.max_images_per_request,
            max_body_bytes=self.config.limits.max_body_bytes,
            tasks=served_tasks(graphs),
            segment_methods=list(cfg.segment),
            anomaly_methods=[
                method
                for method, graph in (("anomalyclip", "anomaly"), ("winclip", "winclip"))
                if graph in graphs
            ],
        )


def templates(
    value: str | list[str] | tuple[str, ...] | None, names: int, limits: LimitsConfig
) -> tuple[str, ...]:
    """A request's template preset or list for `names` free labels, or a 400 saying what is
    wrong with it; names x templates texts are encoded per request, within
    `limits.max_text_sequences`."""
    try:
        resolved = resolve_templates(value)
    except ValueError as exc:
        raise InvalidInput(str(exc), param="templates") from None
    if names * len(resolved) > limits.max_text_sequences:
        raise InvalidInput(
            f"{names} labels x {len(resolved)} templates = {names * len(resolved)} texts to "
            f"encode, above the limit of {limits.max_text_sequences}; use fewer templates (or "
            "a smaller preset), or register a prompt artifact for a large vocabulary",
            param="templates",
        )
    return resolved


def batch_header(sizes: list[int]) -> dict[str, str]:
    """How full the batches were: cheap to send, the first thing to look at when tuning."""
    return {BATCH_HEADER: ",".join(str(n) for n in sizes)}
