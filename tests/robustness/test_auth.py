"""API keys that come from the environment reach every replica, however it was started."""

from __future__ import annotations

import httpx
from conftest import serve_config


def test_env_only_keys_travel_with_the_app(ray_cluster, tiny_bundle, tmp_path, monkeypatch):
    """`auth.api_keys_env` is read where the app is built and sent with it. Replicas started by
    the cluster never saw this process's environment (set here after the cluster started, as
    with `promptserve serve --address`); they used to read their own and serve without a key."""
    from ray import serve

    from promptserve.serving.app import build_app

    monkeypatch.setenv("PROMPTSERVE_TEST_KEYS", "k-one, k-two")
    cfg = serve_config(
        tiny_bundle.dir, tmp_path / "store", topology="fused",
        auth={"api_keys": [], "api_keys_env": "PROMPTSERVE_TEST_KEYS"},
        encoder={"num_cpus": 0.25}, gateway={"num_cpus": 0.0},
    )  # fmt: skip
    serve.run(build_app(cfg), name="envkeys", route_prefix="/envkeys", blocking=False)
    url = f"{ray_cluster['base_url']}/envkeys/v1/prompts"
    try:
        assert httpx.get(url, timeout=60).status_code == 401
        wrong = httpx.get(url, headers={"authorization": "Bearer k-three"}, timeout=60)
        assert wrong.status_code == 403 and wrong.json()["error"]["type"] == "permission_denied"
        odd = httpx.get(
            url, headers={"authorization": "Bearer k-\u00e9".encode("latin-1")}, timeout=60
        )
        assert odd.status_code == 403  # compared as bytes: a non-ASCII key is just wrong
        for key in ("k-one", "k-two"):
            ok = httpx.get(url, headers={"authorization": f"Bearer {key}"}, timeout=60)
            assert ok.status_code == 200, ok.text
    finally:
        serve.delete("envkeys")


def test_auth_off_is_said_loudly(tiny_bundle, tmp_path, caplog, monkeypatch):
    from promptserve.serving.app import build_app

    monkeypatch.delenv("PROMPTSERVE_API_KEYS", raising=False)
    cfg = serve_config(tiny_bundle.dir, tmp_path / "store")
    with caplog.at_level("WARNING", logger="promptserve"):
        build_app(cfg)
    assert "API authentication is OFF" in caplog.text
