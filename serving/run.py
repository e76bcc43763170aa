"""Starting and stopping the application on a local or existing Ray cluster."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from promptserve.serving.config import AppConfig


def start(config: AppConfig, *, address: str | None = None, num_cpus: int | None = None) -> str:
    """Start (or join) Ray, start Serve's HTTP proxy and deploy the app; returns its base URL."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address is None:
        # A fresh local cluster: Ray's token auth guards multi-user clusters, not a loopback one.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray import serve

    from promptserve.serving.app import build_app

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
        build_app(config),
        name=config.name,
        route_prefix=config.route_prefix,
        logging_config=logging_config,
    )
    prefix = config.route_prefix.rstrip("/")
    return f"http://{config.http.host}:{config.http.port}{prefix}"


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
