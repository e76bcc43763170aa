"""Starting and stopping the application on a local or existing Ray cluster."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from promptserve.serving.config import AppConfig

log = logging.getLogger("promptserve")


def start(config: AppConfig, *, address: str | None = None, num_cpus: int | None = None) -> str:
    """Start (or join) Ray, start Serve's HTTP proxy and deploy the app; returns its base URL.

    The app is built first, so a config that cannot start (keys asked for and none resolved,
    a bad bundle) fails before any cluster does. Ray's own token auth is left as the user's
    environment says: a local cluster's GCS and raylet listen on every interface, and their
    token is what keeps other machines out (`check_ray_auth` says so when it is off)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve

    from promptserve.serving.app import build_app

    app = build_app(config)
    check_ray_auth()
    if not ray.is_initialized():
        # address="local" always starts a new cluster, never attaching to someone else's.
        ray.init(
            address=address or "local",
            num_cpus=num_cpus,
            include_dashboard=False,
            logging_level=logging.WARNING,
        )
    logging_config = {"log_level": config.log_level}
    serve.start(
        http_options={"host": config.http.host, "port": config.http.port},
        logging_config=logging_config,
    )
    serve.run(
        app, name=config.name, route_prefix=config.route_prefix, logging_config=logging_config
    )
    prefix = config.route_prefix.rstrip("/")
    return f"http://{config.http.host}:{config.http.port}{prefix}"


def check_ray_auth() -> bool:
    """Whether Ray's token auth is on; logs a WARNING when the environment turned it off.
    promptserve never turns it off itself: Ray's ports (GCS, raylet, workers) listen on all
    interfaces, and without the token anyone who reaches them can run code on the cluster."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        log.warning(
            "Ray token authentication is OFF (RAY_AUTH_MODE=disabled in this environment): "
            "Ray's own ports listen on all interfaces and accept any client that reaches them; "
            "unset RAY_AUTH_MODE unless this machine is firewalled"
        )
        return False
    return True


def stop(app_name: str | None = None) -> None:
    """Shut Serve and Ray down; with `app_name` (a cluster we joined), remove only our app."""
    import ray
    from ray import serve

    try:
        if app_name is None:
            serve.shutdown()
        else:
            serve.delete(app_name)
    finally:
        ray.shutdown()


def wait_ready(base_url: str, timeout_s: float = 120.0) -> None:
    """Poll /readyz until preloading is done and the encoder answers."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{base_url} was not ready after {timeout_s:.0f}s")


def run_forever(config: AppConfig, *, address: str | None = None) -> None:
    """`promptserve serve`: block until Ctrl-C or SIGTERM, then shut Serve and Ray down."""
    url = start(config, address=address)
    wait_ready(url)
    print(
        f"promptserve is serving {config.bundle} at {url} (docs at {url}/docs); Ctrl-C to stop",
        flush=True,
    )
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        stopping.wait()
    finally:
        print("shutting down ...", flush=True)
        stop(config.name if address else None)
