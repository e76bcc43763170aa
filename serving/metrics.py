"""Prometheus metrics, exported through Ray's metrics endpoint (names get Ray's `ray_` prefix).

Created lazily inside replicas (Ray metrics must be built in the process that records them).
"""

from __future__ import annotations

from functools import cache
from typing import Any

LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
TOKEN_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]
BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256]


def _metrics_module() -> Any:
    """Serve's metrics (tagged with deployment and replica) inside a replica; Ray's plain
    metrics elsewhere (e.g. a deployment class driven directly in a test or a script)."""
    from ray import serve
    from ray.serve.exceptions import RayServeException

    try:
        serve.get_replica_context()
    except RayServeException:
        from ray.util import metrics as plain

        return plain
    from ray.serve import metrics as tagged

    return tagged


@cache
def _m() -> Any:
    rm = _metrics_module()

    class M:
        requests = rm.Counter(
            "promptserve_requests_total",
            description="HTTP requests by route, prompt_id and status code.",
            tag_keys=("route", "prompt_id", "status"),
        )
        latency = rm.Histogram(
            "promptserve_request_latency_seconds",
            description="End-to-end request latency in the gateway.",
            boundaries=LATENCY_BUCKETS,
            tag_keys=("route",),
        )
        images = rm.Counter("promptserve_images_total", description="Images classified.")
        batch_size = rm.Histogram(
            "promptserve_batch_size",
            description="Images per vision-encoder call (across requests and prompts).",
            boundaries=BATCH_BUCKETS,
        )
        queue_length = rm.Gauge(
            "promptserve_queue_length",
            description="Images (or windows) admitted to an encoder replica and not yet answered.",
        )
        artifact_loads = rm.Counter(
            "promptserve_artifact_loads_total", description="Prompt heads loaded into a replica."
        )
        artifact_load_failures = rm.Counter(
            "promptserve_artifact_load_failures_total",
            description="Registered prompt artifacts that failed to load into a replica.",
        )
        artifact_evictions = rm.Counter(
            "promptserve_artifact_evictions_total", description="Prompt heads evicted (LRU)."
        )
        store_quarantined = rm.Counter(
            "promptserve_store_quarantined_total",
            description="Stored prompts found corrupt and quarantined (not served).",
        )
        tokens = rm.Counter(
            "promptserve_tokens_total",
            description="Tokens run through a text family's graph (prompt and text, no padding).",
        )
        index_documents = rm.Gauge(
            "promptserve_index_documents",
            description="Documents in each retrieval index.",
            tag_keys=("index_id",),
        )
        index_writes = rm.Counter(
            "promptserve_index_writes_total",
            description="Documents added (or replaced) and deleted, by op.",
            tag_keys=("op",),
        )
        index_query_latency = rm.Histogram(
            "promptserve_index_query_latency_seconds",
            description="Index search time per request (all its queries), by mode.",
            boundaries=LATENCY_BUCKETS,
            tag_keys=("mode",),
        )
        generated_tokens = rm.Counter(
            "promptserve_generated_tokens_total",
            description="Tokens generated, by the prompt (`model`) that ran.",
            tag_keys=("prompt_id",),
        )
        prompt_tokens = rm.Counter(
            "promptserve_prompt_tokens_total",
            description="Prompt tokens prefilled for generation (soft prompts included).",
        )
        time_to_first_token = rm.Histogram(
            "promptserve_time_to_first_token_seconds",
            description="Streamed generation requests: arrival to first token, in the gateway.",
            boundaries=LATENCY_BUCKETS,
        )
        inter_token_latency = rm.Histogram(
            "promptserve_inter_token_latency_seconds",
            description="Between consecutive streamed chunks of one generation.",
            boundaries=TOKEN_BUCKETS,
        )
        pool_selections = rm.Counter(
            "promptserve_pool_selections_total",
            description="IDP pool choices: which prompt (`choice`, its index) each request ran.",
            tag_keys=("prompt_id", "choice"),
        )
        text_cache_hits = rm.Counter(
            "promptserve_text_cache_hits_total",
            description="Free-label features served from cache.",
        )
        text_cache_misses = rm.Counter(
            "promptserve_text_cache_misses_total",
            description="Free-label features computed by the text encoder.",
        )

    return M


def metrics() -> Any:
    """The process's metric objects."""
    return _m()
