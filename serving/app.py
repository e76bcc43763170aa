"""`build_app(config) -> Application`: the one place deployment options meet the classes."""

from __future__ import annotations

from ray import serve
from ray.serve import Application

from promptserve.serving.config import AppConfig
from promptserve.serving.deployments.encoder import EncoderDeployment
from promptserve.serving.deployments.gateway import GatewayIngress


def build_app(config: AppConfig) -> Application:
    options = config.deployment_options()
    gateway = serve.deployment(GatewayIngress, name="gateway", **options["gateway"])
    if config.topology == "fused":
        return gateway.bind(config, None)
    encoder = serve.deployment(EncoderDeployment, name="encoder", **options["encoder"])
    return gateway.bind(config, encoder.bind(config))


def app_builder(args: dict) -> Application:
    """Serve config `import_path` target: `promptserve.serving.app:app_builder` with args
    `{config: <path>}` or the AppConfig fields inline."""
    from promptserve.serving.config import load_config

    config = load_config(args["config"]) if "config" in args else AppConfig.model_validate(args)
    return build_app(config)
