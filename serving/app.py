"""The one place a family's deployments meet Ray Serve: `build_app(config) -> Application`
applies the deployment options, and the topology (split or fused) is wired here and nowhere
else.

The bundle names its family; the family names its gateway and encoder classes
(models/family.py), so this module imports no family.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ray import serve
from ray.serve import Application

from promptserve.models.bundle import Bundle
from promptserve.serving.auth import resolve_keys
from promptserve.serving.config import AppConfig
from promptserve.serving.errors import ServeError

log = logging.getLogger("promptserve")


def build_app(config: AppConfig, *, user_config: dict[str, Any] | None = None) -> Application:
    """The application `config` describes. `user_config` replaces the batch settings the
    config gives the encoder: deploying the same app with only these changed is a live
    update (Serve calls the encoder's `reconfigure`; no replica restarts)."""
    family = Bundle(config.bundle).family
    gateway_cls, encoder_cls = family.deployments()
    # here: replicas started by a cluster never see this environment; raises if keys were
    # asked for and none resolved
    keys = resolve_keys(config.auth)
    family_services = family.services(config)
    options = config.deployment_options(services=list(family_services))
    if user_config is not None:
        options["gateway" if config.topology == "fused" else "encoder"]["user_config"] = user_config
    gateway: Any = serve.deployment(gateway_cls, name="gateway", **options["gateway"])
    # services (e.g. an index holder) are their own deployments in either topology
    services: dict[str, Any] = {}
    for name, cls in family_services.items():
        deployment: Any = serve.deployment(cls, name=name, **options.get(name, {}))
        services[name] = deployment.bind(config)
    if config.topology == "fused":
        app: Application = gateway.bind(config, None, keys, services)
        return app
    encoder: Any = serve.deployment(encoder_cls, name="encoder", **options["encoder"])
    app = gateway.bind(config, encoder.bind(config), keys, services)
    return app


def app_builder(args: dict[str, Any]) -> Application:
    """Serve config `import_path` target: `promptserve.serving.app:app_builder` with args
    `{config: <path>}` or the AppConfig fields inline."""
    from promptserve.serving.config import load_config

    config = load_config(args["config"]) if "config" in args else AppConfig.model_validate(args)
    return build_app(config)


class EncoderLink:
    """How a gateway calls its encoder, the same for both topologies: a Serve handle (split)
    or the encoder object in this process (fused, one hop fewer)."""

    def __init__(self, handle: Any | None = None, local: Any | None = None) -> None:
        self._handle, self._local = handle, local

    async def call(self, method: str, *args: Any) -> Any:
        """The encoder method's result; a refusal it returned (`Encoder.sheds`) is raised."""
        if self._handle is not None:
            result = await getattr(self._handle, method).remote(*args)
        else:
            result = getattr(self._local, method)(*args)
            result = await result if asyncio.iscoroutine(result) else result
        if isinstance(result, ServeError):
            raise result
        return result

    async def check_health(self) -> None:
        """An in-process encoder's health is its gateway's; a separate encoder deployment's
        is probed by Serve itself."""
        if self._local is not None:
            await self._local.check_health()

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Batch settings reach an in-process encoder through its gateway; a separate encoder
        deployment gets them from Serve itself."""
        if self._local is not None:
            self._local.reconfigure(user_config)


def connect_encoder(config: AppConfig, bundle: Bundle, handle: Any | None) -> EncoderLink:
    """The encoder a gateway replica talks to: the deployment behind `handle`, or (fused
    topology, `handle` None) the family's encoder built in this process."""
    if handle is not None:
        return EncoderLink(handle=handle)
    _, encoder_cls = bundle.family.deployments()
    return EncoderLink(local=encoder_cls(config))
