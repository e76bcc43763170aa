"""`build_app(config) -> Application`: the one place deployment options meet the classes."""

from __future__ import annotations

from ray import serve
from ray.serve import Application

from promptserve.serving.config import AppConfig
from promptserve.serving.deployments.encoder import EncoderDeployment
from promptserve.serving.deployments.gateway import GatewayIngress


def build_app(config: AppConfig) -> Application:
    enc, gw = config.encoder, config.gateway
    batch_config = {
        "max_batch_size": enc.max_batch_size,
        "batch_wait_timeout_s": enc.batch_wait_timeout_s,
    }
    if config.topology == "fused":
        fused = serve.deployment(
            GatewayIngress,
            name="gateway",
            num_replicas=enc.num_replicas,
            max_ongoing_requests=gw.max_ongoing_requests,
            max_queued_requests=gw.max_queued_requests,
            ray_actor_options={"num_cpus": gw.num_cpus + enc.num_cpus, "num_gpus": enc.num_gpus},
            user_config=batch_config,
        )
        return fused.bind(config, None)
    encoder = serve.deployment(
        EncoderDeployment,
        name="encoder",
        num_replicas=enc.num_replicas,
        max_ongoing_requests=enc.max_ongoing_requests,
        max_queued_requests=enc.max_queued_requests,
        ray_actor_options={"num_cpus": enc.num_cpus, "num_gpus": enc.num_gpus},
        user_config=batch_config,
        health_check_period_s=10,
    ).bind(config)
    gateway = serve.deployment(
        GatewayIngress,
        name="gateway",
        num_replicas=gw.num_replicas,
        max_ongoing_requests=gw.max_ongoing_requests,
        max_queued_requests=gw.max_queued_requests,
        ray_actor_options={"num_cpus": gw.num_cpus},
    )
    return gateway.bind(config, encoder)


def app_builder(args: dict) -> Application:
    """Serve config `import_path` target: `promptserve.serving.app:app_builder` with args
    `{config: <path>}` or the AppConfig fields inline."""
    from promptserve.serving.config import load_config

    config = load_config(args["config"]) if "config" in args else AppConfig.model_validate(args)
    return build_app(config)
