"""After traffic, Ray's metrics endpoint exports promptserve's request, latency, batch, queue,
artifact and text-cache metrics."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from promptserve import Client, PromptNotFound
from promptserve.models.clip.export.importers.templates import build_templates


def _scrape_until(port: int, patterns: list[str], timeout_s: float = 90) -> str:
    deadline, text = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        except httpx.HTTPError:
            text = ""
        if all(re.search(p, text, re.M) for p in patterns):
            return text
        time.sleep(2)
    missing = [p for p in patterns if not re.search(p, text, re.M)]
    raise AssertionError(
        f"metrics never showed {missing}; promptserve lines: "
        + "\n".join(line for line in text.splitlines() if "ray_promptserve" in line)[-4000:]
    )


def test_metrics_are_exported_after_traffic(server, tiny_spec, images, tmp_path):
    """Also: only registered prompts that authorised requests named become label values (a
    client's ids used to create one series each, keyless ones included, until Ray's cap put
    every series, good ones too, in an overflow bucket)."""
    with Client(server["base_url"], max_retries=0) as c:
        for i in range(3):
            with pytest.raises(PromptNotFound):  # well-formed, but not registered
                c.classify(images[0], prompt_id=f"metrics-ghost{i}")
    for i in range(3):  # registered or not: no key
        body = {"images": ["eA=="], "prompt_id": f"metrics-ghost{i}"}
        keyless = httpx.post(f"{server['secure_url']}/v1/classify", json=body, timeout=60)
        assert keyless.status_code == 401
    with Client(server["base_url"]) as c:
        # Three prompts through a replica that keeps two: at least one LRU eviction.
        for i in range(3):
            art = build_templates(
                [f"thing{i}", "other"], backbone_id=tiny_spec.id, templates=["a {}."]
            )
            c.register_prompt(art.save(tmp_path / str(i)), prompt_id=f"metrics-{i}")
        for i in (0, 1, 2, 0):
            c.classify(images[:2], prompt_id=f"metrics-{i}")
        for _ in range(2):  # second call hits the free-label cache
            c.classify(images[0], labels=["metric label a", "metric label b"])
        httpx.post(
            f"{server['base_url']}/v1/classify", json={"images": [], "labels": ["a"]}, timeout=30
        )
    patterns = [
        r'^ray_promptserve_requests_total\{[^}]*prompt_id="metrics-0"[^}]*route="classify"[^}]*status="200"[^}]*\} [1-9]',
        r'^ray_promptserve_requests_total\{[^}]*status="400"[^}]*\} [1-9]',
        r"^ray_promptserve_request_latency_seconds_bucket\{",
        r"^ray_promptserve_batch_size_bucket\{",
        r"^ray_promptserve_queue_length\{",
        r"^ray_promptserve_artifact_loads_total\{[^}]*\} [1-9]",
        r"^ray_promptserve_artifact_evictions_total\{[^}]*\} [1-9]",
        r"^ray_promptserve_text_cache_hits_total\{[^}]*\} [1-9]",
        r"^ray_promptserve_text_cache_misses_total\{[^}]*\} [1-9]",
    ]
    patterns.append(r'^ray_promptserve_requests_total\{[^}]*route="classify"[^}]*status="401"')
    text = _scrape_until(server["metrics_port"], patterns)
    assert "metrics-ghost" not in text


def test_prompt_id_labels_are_capped():
    from types import SimpleNamespace

    from promptserve.serving.config import MetricsConfig
    from promptserve.serving.deployments.gateway import _TAGS, Gateway

    def labels(cap: int, ids: list[str]) -> list[str]:
        gw = SimpleNamespace(config=SimpleNamespace(metrics=MetricsConfig(prompt_id_labels=cap)))
        gw._labelled = set()
        seen = []
        for prompt_id in ids:
            token = _TAGS.set({})
            Gateway._label(gw, prompt_id)  # type: ignore[arg-type]
            seen.append(_TAGS.get()["prompt_id"])
            _TAGS.reset(token)
        return seen

    assert labels(2, ["a", "b", "c", "a", "d"]) == ["a", "b", "_other", "a", "_other"]
    assert labels(0, ["a", "b"]) == ["", ""]
