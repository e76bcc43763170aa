"""The one application config: `promptserve serve CONFIG` runs it (and later deploy/ renders
the KubeRay serveConfigV2 from it), so local and cluster deployments cannot drift apart.

Example (YAML):
    bundle: bundles/vit-b-32
    engine: {name: onnxruntime, threads: 2}
    encoder: {max_batch_size: 32, batch_wait_timeout_s: 0.005, num_gpus: 0}
    prompts: {store: /var/lib/promptserve/prompts, preload: [artifacts/]}
    auth: {enabled: true, api_keys_env: PROMPTSERVE_API_KEYS}
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from promptserve.serving.engines.base import EngineOptions
from promptserve.serving.index.config import IndexEngineConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineConfig(EngineOptions):
    name: Literal["onnxruntime", "torch", "triton"] = "onnxruntime"


class HttpConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = 8000


class AutoscalingConfig(_Strict):
    """Ray Serve replica autoscaling (`autoscaling_config`); replaces `num_replicas`."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(4, ge=1)
    target_ongoing_requests: float = Field(
        2.0, gt=0, description="Requests in flight per replica the autoscaler aims for."
    )
    upscale_delay_s: float = Field(30.0, ge=0)
    downscale_delay_s: float = Field(600.0, ge=0)
    metrics_interval_s: float | None = Field(None, gt=0, description="Serve's default if None.")
    look_back_period_s: float | None = Field(None, gt=0, description="Serve's default if None.")


class GatewayConfig(_Strict):
    """The FastAPI ingress: auth, validation, image decode and preprocessing."""

    num_replicas: int = Field(1, ge=1)
    autoscaling: AutoscalingConfig | None = Field(None, description="Set to autoscale replicas.")
    num_cpus: float = Field(0.5, ge=0)
    max_ongoing_requests: int = Field(
        256,
        ge=1,
        description="Concurrent HTTP requests per replica. Above the encoders' admission bound, "
        "so excess reaches a replica and is refused with the JSON 503 instead of waiting in "
        "the proxy's queue.",
    )
    max_queued_requests: int = Field(
        256, ge=-1, description="Waiting at the proxy before 503; -1 = unbounded."
    )


class EncoderConfig(_Strict):
    """The vision-encoder deployment that batches images across requests and prompts."""

    num_replicas: int = Field(1, ge=1)
    autoscaling: AutoscalingConfig | None = Field(None, description="Set to autoscale replicas.")
    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    resources: dict[str, float] = Field(
        default_factory=dict,
        description="Custom Ray resources each replica needs, e.g. {encoder_node: 1} to pin "
        "replicas to nodes started with that resource.",
    )
    batcher: Literal["continuous", "serve"] = Field(
        "continuous",
        description="continuous: close a batch when the engine is free (serving/batching.py); "
        "serve: Ray Serve's @serve.batch.",
    )
    max_batch_size: int = Field(32, ge=1, description="Images per vision-graph call.")
    batch_wait_timeout_s: float = Field(0.005, ge=0, description="How long a batch waits to fill.")
    max_inflight_batches: int = Field(
        1,
        ge=1,
        description="Batches per graph in the engine at once (continuous batcher): 1 for "
        "in-process engines, which one batch fills; 2+ for the triton engine, so the network "
        "hop overlaps and Triton's batcher sees several batches.",
    )
    max_ongoing_requests: int = Field(256, ge=1)
    max_queued_requests: int = Field(
        512, ge=-1, description="Handle-side queue bound; beyond it, 503."
    )
    max_batch_tokens: int = Field(
        8192,
        ge=16,
        description="Text families: padded tokens per graph call (batch rows x the longest "
        "row). A batch of texts closes on this budget, not on a count, and is cut into "
        "length buckets inside it, so short queries are not padded to a long passage.",
    )
    max_queued_images: int | None = Field(
        None,
        ge=1,
        description="Admission: images (or windows) one replica holds; a request beyond gets "
        "503 + Retry-After at once instead of a late answer (serving/admission.py). Default: 4 "
        "x max_batch_size, a few batches, which keeps the engine fed.",
    )
    split_plain_rows: float = Field(
        0.1,
        ge=0,
        description="Plain rows of a deep-prompt batch go through the plain vision graph in a "
        "second call when the batch's longest prompt would add more than this fraction to their "
        "tokens (docs/architecture.md#deep-prompts-maple-ivlp).",
    )

    def queued_images_bound(self) -> int:
        """The admission bound `max_queued_images` names, or its default."""
        return self.max_queued_images or 4 * self.max_batch_size


class PromptsConfig(_Strict):
    store: str = Field(
        default_factory=lambda: str(Path.home() / ".cache" / "promptserve" / "prompts"),
        description="Where registered artifacts live: a directory or an fsspec URL shared by replicas.",
    )
    preload: list[str] = Field(
        default_factory=list, description="Artifact dirs/URLs registered at start."
    )
    max_loaded: int = Field(256, ge=1, description="Prompt heads kept per replica (LRU).")
    text_cache_size: int = Field(
        8192, ge=0, description="Free-label text features kept per replica (LRU)."
    )
    info_ttl_s: float = Field(
        2.0,
        ge=0,
        description="How long a gateway trusts its cached view of a prompt; deletes made "
        "through other gateway replicas show after this.",
    )


class LimitsConfig(_Strict):
    max_images_per_request: int = Field(64, ge=1)
    max_body_bytes: int = Field(64 << 20, ge=1)
    max_labels: int = Field(1000, ge=1, description="Free labels per request.")
    max_templates: int = Field(100, ge=1, description="Templates per request (free labels).")
    max_text_chars: int = Field(
        300, ge=1, description="Longest label or template, in characters (CLIP reads 77 tokens)."
    )
    max_text_sequences: int = Field(
        100_000,
        ge=1,
        description="Texts one request's free vocabulary encodes (labels x templates); they "
        "are encoded a chunk at a time, so this bounds time, not memory.",
    )
    max_image_pixels: int = Field(40_000_000, ge=1, description="Decompression-bomb guard.")
    max_output_pixels: int = Field(
        32_000_000,
        ge=1,
        description="Map pixels one /v1/anomaly response carries (float16 each); ask for "
        "smaller maps with the request's max_map_side.",
    )
    max_segment_windows: int = Field(
        512,
        ge=1,
        description="Sliding windows one /v1/segment request runs through the vision graph "
        "(images x windows per image, set by short_side and stride).",
    )
    max_segment_pixels: int = Field(
        16_000_000,
        ge=1,
        description="Largest image /v1/segment labels (its map is computed at the original size).",
    )
    max_texts_per_request: int = Field(
        256, ge=1, description="Texts (queries, documents) one text request carries."
    )
    max_document_chars: int = Field(
        200_000,
        ge=1,
        description="Longest text, in characters; the model reads only its first tokens "
        "(the prompt's max length), so this bounds tokenizer work, not what is read.",
    )
    max_k: int = Field(1000, ge=1, description="Most documents one query may ask for.")
    max_retrieve_depth: int = Field(
        1000,
        ge=1,
        description="Most candidates each run contributes to a hybrid/rrf fusion (the official "
        "PromptReps runs fuse the top 1000 of each); also the default depth.",
    )
    max_inflight_images: int = Field(
        4096, ge=1, description="Images in flight per gateway replica before 503."
    )
    retry_after_s: int = Field(1, ge=0, description="Retry-After sent with 503s.")


class MetricsConfig(_Strict):
    prompt_id_labels: int = Field(
        100,
        ge=0,
        description="Distinct prompt ids one replica tags request metrics with (registered "
        "prompts that authorised requests named); later ones are tagged `_other`; 0 = none.",
    )


class AuthConfig(_Strict):
    """API keys (serving/auth.py resolves and checks them). Read keys run tasks and read the
    registry; admin keys may also register and delete prompts."""

    enabled: bool | None = Field(
        None,
        description="true: refuse to start unless a key resolves; false: no auth (logged at "
        "WARNING). Unset: true when this section names keys or key variables, else auth is on "
        "only if the default variables hold keys.",
    )
    api_keys: list[str] = Field(default_factory=list, description="Read keys (bearer tokens).")
    api_keys_env: str | None = Field(
        "PROMPTSERVE_API_KEYS", description="Env var with more read keys, comma-separated."
    )
    admin_keys: list[str] = Field(
        default_factory=list, description="Admin keys: everything, registering prompts included."
    )
    admin_keys_env: str | None = Field(
        "PROMPTSERVE_ADMIN_KEYS", description="Env var with more admin keys, comma-separated."
    )

    @model_validator(mode="before")
    @classmethod
    def _asked_for_keys(cls, data: Any) -> Any:
        """A section that names keys or key variables asks for auth: if they resolve to
        nothing (a variable missing where the app is built) the server must not start."""
        named = ("api_keys", "api_keys_env", "admin_keys", "admin_keys_env")
        if isinstance(data, dict) and "enabled" not in data and any(data.get(k) for k in named):
            return {**data, "enabled": True}
        return data

    @staticmethod
    def _read(tokens: list[str], env_name: str | None) -> frozenset[str]:
        env = os.environ.get(env_name, "") if env_name else ""
        return frozenset([*tokens, *(k.strip() for k in env.split(",") if k.strip())])

    def read_keys(self) -> frozenset[str]:
        """Read keys, from this process's environment: call it where the app is built
        (serving/app.py), whose environment the user controls; replicas a cluster starts may
        never see it, so the keys travel with the app instead."""
        return self._read(self.api_keys, self.api_keys_env)

    def admin_keys_resolved(self) -> frozenset[str]:
        """Admin keys, read as `read_keys` are."""
        return self._read(self.admin_keys, self.admin_keys_env)

    def sources(self) -> str:
        """Where keys come from, for messages."""
        names = ["auth.api_keys", "auth.admin_keys"]
        names += [f"${v}" for v in (self.api_keys_env, self.admin_keys_env) if v]
        return ", ".join(names)

    def off_warning(self, reason: str) -> str:
        """What to log, loudly, when auth is off."""
        return (
            f"API authentication is OFF ({reason}; keys come from {self.sources()}): anyone "
            "who reaches the server can run tasks and register or delete prompts"
        )


class IndexerConfig(_Strict):
    """The deployment that holds the index engine's client (serving/deployments/indexer.py).
    With the embedded engine it owns the files, so it runs one replica; with a server engine
    (Qdrant) it is a stateless client and may run more."""

    num_replicas: int = Field(1, ge=1)
    num_cpus: float = Field(0.5, ge=0)
    max_ongoing_requests: int = Field(64, ge=1)
    max_queued_requests: int = Field(256, ge=-1)


class GeneratorConfig(_Strict):
    """The deployment that generates text (LLM bundles; the `llm` family's generator): which
    engine runs the backbone, how many requests it batches, and its replicas. Present means
    the app serves `/v1/completions` and `/v1/chat/completions`."""

    engine: Literal["transformers", "vllm"] = Field(
        "transformers",
        description="transformers: CPU (or one GPU), step-level batching; vllm: GPU, "
        "continuous batching with prompt embeddings.",
    )
    num_replicas: int = Field(1, ge=1)
    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    max_ongoing_requests: int = Field(256, ge=1)
    max_queued_requests: int = Field(256, ge=-1)
    max_batch_rows: int = Field(16, ge=1, description="Requests decoded together.")
    max_prefill_tokens: int = Field(
        4096, ge=1, description="Prompt tokens prefilled in one step (transformers)."
    )
    max_waiting: int = Field(
        256, ge=1, description="Requests waiting for a batch slot; beyond: 503."
    )
    default_max_tokens: int = Field(
        256, ge=1, description="New tokens when a request gives no max_tokens."
    )
    max_tokens: int = Field(2048, ge=1, description="The largest max_tokens a request may ask.")
    base_model: str = Field(
        "base", description="The `model` id that runs the backbone with no prompt."
    )
    vllm: dict[str, Any] = Field(
        default_factory=dict,
        description="vLLM engine options (models/llm/generate/vllm_engine.py::VllmOptions).",
    )


class AppConfig(_Strict):
    name: str = "promptserve"
    route_prefix: str = "/"
    topology: Literal["split", "fused"] = Field(
        "split",
        description="split: gateway and encoder deployments scale separately (GPU encoders, CPU "
        "gateways); fused: one deployment does both in one process, saving a hop (small CPU boxes).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Serve and replica logs."
    )
    bundle: str = Field(description="Directory written by `promptserve export`.")
    engine: EngineConfig = Field(default_factory=EngineConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    index: IndexEngineConfig = Field(
        default_factory=IndexEngineConfig,
        description="Where retrieval indexes live (families that retrieve: llm).",
    )
    indexer: IndexerConfig = Field(default_factory=IndexerConfig)
    generator: GeneratorConfig | None = Field(
        None, description="Text generation (LLM bundles); absent: no generation routes."
    )

    @model_validator(mode="after")
    def _embedded_index_has_one_owner(self) -> AppConfig:
        if self.indexer.num_replicas > 1 and self.index.embedded:
            raise ValueError(
                f"indexer.num_replicas is {self.indexer.num_replicas}, but the embedded index "
                f"engine {self.index.engine!r} keeps its files in one process: use 1, or a "
                "server engine (index.engine: qdrant) for more replicas"
            )
        return self

    @model_validator(mode="after")
    def _tensorrt_profile_covers_batches(self) -> AppConfig:
        trt = self.engine.tensorrt
        if trt is not None and trt.max_batch < self.encoder.max_batch_size:
            raise ValueError(
                f"engine.tensorrt.max_batch {trt.max_batch} is below encoder.max_batch_size "
                f"{self.encoder.max_batch_size}: larger batches would fall outside the profile"
            )
        return self

    def deployment_options(self, services: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
        """Ray Serve options per deployment, in `serve.deployment` / serveConfigV2
        `deployments` terms: `build_app` applies them and `promptserve k8s render` writes
        them, from this one place. `services` are the family's other deployments
        (`Family.services`): `indexer` and `generator` are the ones this config describes."""
        enc, gw = self.encoder, self.gateway
        batch = {
            "max_batch_size": enc.max_batch_size,
            "batch_wait_timeout_s": enc.batch_wait_timeout_s,
        }

        def scaling(num_replicas: int, auto: AutoscalingConfig | None) -> dict[str, Any]:
            if auto is None:
                return {"num_replicas": num_replicas}
            return {"autoscaling_config": auto.model_dump(exclude_none=True)}

        # Serve's own 503s (a deployment's max_queued_requests reached, e.g. at the proxy) say
        # when to retry too; their body is Serve's plain text, ours is JSON
        shed = {"backpressure_config": {"retry_after_s": self.limits.retry_after_s}}
        encoder_actor: dict[str, Any] = {"num_cpus": enc.num_cpus, "num_gpus": enc.num_gpus}
        if enc.resources:
            encoder_actor["resources"] = dict(enc.resources)
        ix = self.indexer
        extra: dict[str, dict[str, Any]] = {}
        if "indexer" in services:
            extra["indexer"] = {
                "num_replicas": ix.num_replicas,
                "max_ongoing_requests": ix.max_ongoing_requests,
                "max_queued_requests": ix.max_queued_requests,
                **shed,
                "ray_actor_options": {"num_cpus": ix.num_cpus},
            }
        if "generator" in services and self.generator is not None:
            g = self.generator
            extra["generator"] = {
                "num_replicas": g.num_replicas,
                "max_ongoing_requests": g.max_ongoing_requests,
                "max_queued_requests": g.max_queued_requests,
                **shed,
                "ray_actor_options": {"num_cpus": g.num_cpus, "num_gpus": g.num_gpus},
                "health_check_period_s": 10,
            }
        if self.topology == "fused":
            return {
                **extra,
                "gateway": {
                    **scaling(enc.num_replicas, enc.autoscaling),
                    "max_ongoing_requests": gw.max_ongoing_requests,
                    "max_queued_requests": gw.max_queued_requests,
                    **shed,
                    "ray_actor_options": {**encoder_actor, "num_cpus": gw.num_cpus + enc.num_cpus},
                    "user_config": batch,
                },
            }
        return {
            **extra,
            "encoder": {
                **scaling(enc.num_replicas, enc.autoscaling),
                "max_ongoing_requests": enc.max_ongoing_requests,
                "max_queued_requests": enc.max_queued_requests,
                **shed,
                "ray_actor_options": encoder_actor,
                "user_config": batch,
                "health_check_period_s": 10,
            },
            "gateway": {
                **scaling(gw.num_replicas, gw.autoscaling),
                "max_ongoing_requests": gw.max_ongoing_requests,
                "max_queued_requests": gw.max_queued_requests,
                **shed,
                "ray_actor_options": {"num_cpus": gw.num_cpus},
            },
        }


def load_config(path: str | Path) -> AppConfig:
    """Read a YAML config; relative paths are taken from the config file's directory."""
    import yaml

    path = Path(path)
    data = yaml.safe_load(path.read_text()) or {}
    cfg = AppConfig.model_validate(data)
    base = path.parent
    bundle = cfg.bundle if "://" in cfg.bundle else str((base / cfg.bundle).resolve())
    prompts = cfg.prompts.model_copy(
        update={
            "preload": [p if "://" in p else str((base / p).resolve()) for p in cfg.prompts.preload]
        }
    )
    return cfg.model_copy(update={"bundle": bundle, "prompts": prompts})
