"""The auth matrix: keys from the environment reach every replica however it was started, read
keys cannot write, a config that asks for keys and gets none refuses to start, and auth off is
always said."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest
from conftest import serve_config

from promptserve.serving.auth import ApiKeys, AuthConfigError, resolve_keys
from promptserve.serving.config import AuthConfig
from promptserve.serving.errors import AuthenticationError, PermissionDenied


def test_env_only_keys_travel_with_the_app_and_read_keys_cannot_write(
    ray_cluster, tiny_bundle, tmp_path, monkeypatch
):
    """`auth.api_keys_env` / `admin_keys_env` are read where the app is built and sent with it.
    Replicas started by the cluster never saw this process's environment (set here after the
    cluster started, as with `promptserve serve --address`); they used to read their own and
    serve without a key."""
    from ray import serve

    from promptserve.serving.app import build_app

    monkeypatch.setenv("PROMPTSERVE_TEST_KEYS", "k-one, k-two")
    monkeypatch.setenv("PROMPTSERVE_TEST_ADMIN", "k-admin")
    cfg = serve_config(
        tiny_bundle.dir, tmp_path / "store", topology="fused",
        auth={"api_keys_env": "PROMPTSERVE_TEST_KEYS", "admin_keys_env": "PROMPTSERVE_TEST_ADMIN"},
        encoder={"num_cpus": 0.25}, gateway={"num_cpus": 0.0},
    )  # fmt: skip
    serve.run(build_app(cfg), name="envkeys", route_prefix="/envkeys", blocking=False)
    url = f"{ray_cluster['base_url']}/envkeys/v1/prompts"

    def call(method: str, path: str = "", key: str | bytes | None = None, **kw) -> httpx.Response:
        headers = {"authorization": b"Bearer " + key if isinstance(key, bytes) else f"Bearer {key}"}
        return httpx.request(method, url + path, headers=headers if key else {}, timeout=60, **kw)

    try:
        assert call("GET").status_code == 401
        wrong = call("GET", key="k-three")
        assert wrong.status_code == 403 and wrong.json()["error"]["type"] == "permission_denied"
        # compared as bytes: a non-ASCII key is just wrong
        assert call("GET", key="k-\u00e9".encode("latin-1")).status_code == 403
        for key in ("k-one", "k-two", "k-admin"):
            assert call("GET", key=key).status_code == 200, key
        # a read key may not register or delete; the message says which key is needed
        for method, path, body in (("POST", "", {"json": {"manifest": {}}}), ("DELETE", "/x", {})):
            denied = call(method, path, key="k-one", **body)
            assert denied.status_code == 403, denied.text
            assert "admin key" in denied.json()["error"]["message"]
            assert call(method, path, **body).status_code == 401
        # the admin key gets past auth: the body or the id is what answers now
        assert call("POST", "", key="k-admin", json={"manifest": {}}).status_code == 400
        assert call("DELETE", "/x", key="k-admin").status_code == 404
        assert call("GET", key="k-one").status_code == 200  # still serving
    finally:
        serve.delete("envkeys")


def test_keys_asked_for_but_missing_refuse_to_start(tiny_bundle, tmp_path, monkeypatch):
    """`promptserve serve` with `auth: {api_keys_env: VAR}` and VAR unset used to serve with no
    auth; now it exits with the reason, before any Ray cluster starts."""
    monkeypatch.delenv("PROMPTSERVE_TEST_MISSING", raising=False)
    (tmp_path / "app.yaml").write_text(
        f"bundle: {tiny_bundle.dir}\nprompts: {{store: {tmp_path / 'store'}}}\n"
        "auth: {api_keys_env: PROMPTSERVE_TEST_MISSING}\n"
    )
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "promptserve.cli", "serve", str(tmp_path / "app.yaml")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2, out.stdout + out.stderr
    assert "none resolved" in out.stderr and "auth.enabled: false" in out.stderr, out.stderr
    assert "$PROMPTSERVE_TEST_MISSING" in out.stderr
    assert "Traceback" not in out.stderr
    assert "Started a local Ray instance" not in out.stdout + out.stderr
    assert time.monotonic() - started < 60


def test_enabled_true_without_keys_refuses(monkeypatch):
    monkeypatch.delenv("PROMPTSERVE_API_KEYS", raising=False)
    monkeypatch.delenv("PROMPTSERVE_ADMIN_KEYS", raising=False)
    with pytest.raises(AuthConfigError, match="none resolved"):
        resolve_keys(AuthConfig(enabled=True))
    monkeypatch.setenv("PROMPTSERVE_ADMIN_KEYS", "a1")
    assert resolve_keys(AuthConfig(enabled=True)) == ApiKeys(admin=frozenset({"a1"}))


def test_an_unset_section_and_a_dumped_one_mean_the_same():
    """Only a section that names keys asks for auth; a dumped config (every field present, as
    `promptserve k8s render` writes it) keeps the meaning it had."""
    assert AuthConfig().enabled is None
    assert AuthConfig.model_validate({"api_keys_env": "X"}).enabled is True
    assert AuthConfig.model_validate({"admin_keys": ["a"]}).enabled is True
    assert AuthConfig.model_validate({"api_keys": [], "api_keys_env": None}).enabled is None
    for cfg in (AuthConfig(), AuthConfig.model_validate({"api_keys_env": "X"})):
        assert AuthConfig.model_validate(cfg.model_dump()) == cfg


def test_auth_off_is_said_loudly(tiny_bundle, tmp_path, caplog, monkeypatch):
    from promptserve.serving.app import build_app

    monkeypatch.delenv("PROMPTSERVE_API_KEYS", raising=False)
    monkeypatch.delenv("PROMPTSERVE_ADMIN_KEYS", raising=False)
    for auth in ({}, {"enabled": False, "api_keys": ["ignored"]}):
        caplog.clear()
        cfg = serve_config(tiny_bundle.dir, tmp_path / "store", auth=auth)
        with caplog.at_level("WARNING", logger="promptserve"):
            build_app(cfg)
        assert "API authentication is OFF" in caplog.text, auth


def test_key_rights_matrix():
    keys = ApiKeys(read=frozenset({"r"}), admin=frozenset({"a"}))
    for header in (None, "", "Bearer", "Bearer ", "Basic r", "r"):
        with pytest.raises(AuthenticationError):
            keys.check(header, "read")
    for header, right in (("Bearer x", "read"), ("Bearer x", "admin"), ("Bearer r", "admin")):
        with pytest.raises(PermissionDenied):
            keys.check(header, right)  # type: ignore[arg-type]
    keys.check("Bearer r", "read")
    keys.check("bearer a", "read")  # admin keys may read; the scheme is case-insensitive
    keys.check("Bearer a", "admin")
    ApiKeys().check(None, "admin")  # auth off: resolve_keys has said so loudly


def test_ray_auth_off_is_said(monkeypatch, caplog):
    from promptserve.serving.run import check_ray_auth

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with caplog.at_level("WARNING", logger="promptserve"):
        assert check_ray_auth() is False
    assert "Ray token authentication is OFF" in caplog.text
    monkeypatch.delenv("RAY_AUTH_MODE")
    assert check_ray_auth() is True
