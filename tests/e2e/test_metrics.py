"""After traffic, Ray's metrics endpoint exports promptserve's request, latency, batch, queue,
artifact and text-cache metrics."""

from __future__ import annotations

import re
import time

import httpx

from promptserve import Client
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
        + "\n".join(line for line in text.splitlines() if "promptserve" in line)[:3000]
    )


def test_metrics_are_exported_after_traffic(server, tiny_spec, images, tmp_path):
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
    _scrape_until(server["metrics_port"], patterns)
