#!/usr/bin/env python
"""Benchmark: PromptReps retrieval, served vs bare, and the embedded index at scale (issue 15).

One run measures, on this machine, side by side:

1. Encode throughput of passages, served ÷ bare, at concurrency 1, 8 and 32 (goal >= 0.9):
   - bare: `represent()` (models/llm/promptreps.py) on the onnxruntime engine in this process,
     the same bundle, prompt and texts, on batches cut the way the served encoder cuts them
     (by tokens: `bucket()` of models/llm/serve/encoder.py under `encoder.max_batch_tokens`);
     at concurrency N the texts go N at a time (N x `--texts-per-request`);
   - served: `AsyncClient.embed(kind="passage")`, one passage per request (or
     `--texts-per-request`), N requests in flight (closed loop), against the LLM app on a local
     Ray Serve over loopback;
   - texts/s, tokens/s (prompt + text tokens the model read) and texts per CPU-second (served:
     every process of the run, this one and Ray's; bare: this process), medians over
     interleaved rounds (bare then served, the order flipped every round).
   The default model is the tiny seeded Llama of models/llm/export/seeded.py: RANDOM WEIGHTS,
   64 wide, 2 layers. Its forward pass costs almost nothing, so the ratio measures serving
   overhead (HTTP, JSON, Ray hops) against a near-free engine: a tiny model MAGNIFIES the
   overhead; a real model (`--model-dir`) shrinks it.
2. The embedded index engine (Qdrant Edge, serving/index/qdrant_edge.py) with SYNTHETIC
   vectors at 10k / 100k (default) or 1M (`--sizes 1000000`) documents: build rate (docs/s,
   one `upsert` per `--build-batch` documents, what one indexing request writes), query latency
   p50/p99 per query for dense, sparse and hybrid (the indexer's path: both runs to depth
   1000, then serving/index/fusion.py::hybrid), and hybrid ÷ dense. Dense search is exact
   (the engine's only mode, as the official faiss IndexFlatIP). At the largest size also HNSW,
   what `exact: false` gives on a Qdrant server (engine `qdrant`; the embedded engine refuses
   it): the same Rust segment code in-process after the shard's `optimize()`, with its build
   time and recall@10 against exact. At 10k also qdrant-client's local mode through the server
   engine's code (serving/index/qdrant_server.py): a pure-Python brute force, NOT a Qdrant
   server (no server package exists here).
   Dense width 4096 up to `--wide-max-docs` documents (Llama-3-8B's hidden size), 256 above,
   so 1M fits in this machine's memory. Sparse vectors follow PromptReps: passages ~60 terms
   (lognormal, capped at 128, the paper's top-k), queries 3-20 terms, ids Zipf-Mandelbrot
   over a 128k vocabulary (s=1, q=50: the head of the Zipf curve is the stop words PromptReps
   drops), weights log1p(relu(logit))-like, which the engine stores as rint(w x 100).

Results: benchmarks/results/retrieve-<YYYYmmdd-HHMM>.{json,md} and retrieve-latest.{json,md},
with the machine, versions and the load other processes put on it during each point.

Example:
    python benchmarks/retrieve.py                      # encode + index at 10k and 100k
    python benchmarks/retrieve.py --quick --skip-index # a smoke run of the encode part
    python benchmarks/retrieve.py --skip-encode --sizes 1000000
    python benchmarks/retrieve.py --model-dir /models/Meta-Llama-3-8B-Instruct --skip-index
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from serve_classify import (  # noqa: E402 -- shared benchmark helpers
    _CLK_TCK,
    _free_port,
    cpu_snapshot,
    latency_stats,
    machine_info,
    save_report,
    served_app,
)

TINY_NOTE = (
    "RANDOM WEIGHTS: the model is the tiny seeded {arch} of models/llm/export/seeded.py "
    "(hidden 64, 2 layers, vocabulary 2048, seed {seed}). Its forward pass costs almost "
    "nothing, so served ÷ bare measures serving overhead against a near-free engine: the tiny "
    "model magnifies that overhead, a real model shrinks it. Representations are meaningless."
)
REAL_NOTE = "Model: {spec} (its own weights)."
SYNTHETIC_NOTE = (
    "SYNTHETIC VECTORS (no model involved): dense vectors of intrinsic dimension {latent} "
    "through a random projection, {noise:.0%} isotropic noise, L2-normalised (real embeddings "
    "are low-dimensional in this sense; isotropic vectors, --latent-dim 0, make every neighbour "
    "a near-tie and HNSW's recall collapse); PromptReps-shaped sparse vectors. Latencies and "
    "rates are the engine's; recall depends on that data model."
)
VOCAB = 128_000  # sparse ids: Llama-3's vocabulary is 128,256
SPARSE_TOP_K = 128  # PromptReps keeps a passage's top 128 words
DEPTH = 1000  # the indexer's hybrid depth (limits.max_retrieve_depth; the official runs fuse 1000)


# -- CPU accounting from /proc --------------------------------------------------------------------

ROLES = ("encoder", "gateway", "indexer", "proxy", "client", "controller", "ray_other")


def _machine_busy_s() -> float:
    """CPU seconds every process on the machine has used (/proc/stat's first line)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


@dataclass
class CpuWindow:
    """CPU seconds of this process and everything it started, by role, over a window, and
    what the rest of the machine (other users of these cores) used meanwhile."""

    before: dict[int, tuple[str, float]] = field(default_factory=dict)
    busy_before: float = 0.0
    t0: float = 0.0

    def start(self) -> CpuWindow:
        self.before, self.busy_before, self.t0 = cpu_snapshot(), _machine_busy_s(), time.time()
        return self

    def stop(self) -> dict[str, float]:
        after, busy, wall = cpu_snapshot(), _machine_busy_s(), time.time() - self.t0
        used = dict.fromkeys(ROLES, 0.0)
        for pid, (role, cpu) in after.items():
            used[role] += cpu - (self.before[pid][1] if pid in self.before else 0.0)
        ours = sum(used.values())
        out = {f"{role}_s": round(v, 3) for role, v in used.items()}
        out["total_s"] = round(ours, 3)
        out["wall_s"] = round(wall, 3)
        # other processes on the machine during the window, in cores (the box is shared)
        out["others_cores"] = round(max(0.0, busy - self.busy_before - ours) / wall, 3)
        return out


# -- model and texts ------------------------------------------------------------------------------

_EXPORT = """
import sys
from pathlib import Path
from promptserve.models.llm.export.onnx import export_bundle
from promptserve.models.llm.export.seeded import demo_llm_dir
spec, out = sys.argv[1], Path(sys.argv[2])
if spec.startswith("tiny:"):
    _, arch, seed = spec.split(":")
    spec = f"local-dir:{demo_llm_dir(arch, int(seed))}"
export_bundle(spec, out, progress=False)
"""


def ensure_bundle(spec: str, cache: Path) -> Path:
    """The ONNX bundle of `spec` (`tiny:ARCH:SEED` or `local-dir:PATH`), exported once into
    `cache` and reused. The export runs in a child process: torch loaded in this process
    was seen to halve the bare engine's throughput on a 2-core machine (serve_classify.py)."""
    from promptserve.models.bundle import BUNDLE_FILE
    from promptserve.models.llm.export import seeded

    key = spec
    if spec.startswith("tiny:"):  # a changed recipe (seeded.py) is a different model
        key += hashlib.sha256(Path(seeded.__file__).read_bytes()).hexdigest()[:8]
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", spec.split(":", 1)[1].strip("/"))[-40:]
    out = cache / f"llm-{name}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
    if (out / BUNDLE_FILE).exists():
        print(f"reusing bundle {out}", flush=True)
        return out
    print(f"exporting {spec} to {out} ...", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-c", _EXPORT, spec, str(tmp)], check=True)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def synthetic_passages(n: int, seed: int, median_words: float = 60.0) -> list[str]:
    """`n` English passages of 20-200 words (lognormal around `median_words`, sigma 0.55:
    the shape of MS MARCO / BEIR passage lengths), words drawn Zipf-like from the seeded
    model's training text, in sentences of 8-20 words."""
    from promptserve.models.llm.export.seeded import CORPUS

    words = sorted({w for w in re.findall(r"[a-z]+", CORPUS.lower()) if len(w) > 1})
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(words))  # which word is frequent: seeded, not alphabetical
    p = 1.0 / (np.arange(len(words)) + 3.0)
    p /= p.sum()
    lengths = np.clip(np.rint(rng.lognormal(np.log(median_words), 0.55, n)), 20, 200)
    out = []
    for length in lengths.astype(int):
        picked = [words[order[i]] for i in rng.choice(len(words), size=length, p=p)]
        sentences, i = [], 0
        while i < length:
            j = min(length, i + int(rng.integers(8, 21)))
            sentences.append(" ".join(picked[i:j]).capitalize() + ".")
            i = j
        out.append(" ".join(sentences))
    return out


# -- 1. encode: bare ------------------------------------------------------------------------------


class BareEncoder:
    """`represent()` on the onnxruntime engine in this process, batches cut by tokens."""

    def __init__(self, bundle_dir: Path, prompt: Any, threads: int, budget: int) -> None:
        from promptserve.models.bundle import Bundle
        from promptserve.models.llm.bundle import llm_config
        from promptserve.models.llm.runtime import LlmGraphs
        from promptserve.models.llm.tokenizer import LlmTokenizer
        from promptserve.serving.engines.base import EngineOptions

        bundle = Bundle(bundle_dir)
        self.config = llm_config(bundle)
        self.tokenizer = LlmTokenizer.from_file(bundle.dir / self.config.tokenizer_file)
        self.graphs = LlmGraphs.create("onnxruntime", bundle, EngineOptions(threads=threads))
        self.graphs.warmup()
        self.manifest = prompt.manifest
        self.budget = budget

    def lengths(self, texts: Sequence[str]) -> list[int]:
        """Each passage's sequence length (prompt + truncated text), as the encoder sees it."""
        from promptserve.models.llm.promptreps import encode_texts, prompt_ids

        pre, suf = prompt_ids(self.tokenizer, self.manifest, "passage")
        limit = self.manifest.params.max_len("passage")
        return [len(e.ids) for e in encode_texts(self.tokenizer, pre, suf, texts, limit)]

    def plan(self, texts: Sequence[str], lengths: Sequence[int], n: int) -> list[list[list[str]]]:
        """Texts `n` at a time (what N requests in flight hand the served encoder), each group
        cut into graph calls by the served encoder's own `bucket()` under the token budget."""
        from promptserve.models.llm.serve.encoder import bucket

        out = []
        for s in range(0, len(texts) - n + 1, n):
            chunk = list(range(s, s + n))
            out.append(
                [
                    [texts[chunk[i]] for i in g]
                    for g in bucket([lengths[i] for i in chunk], self.budget)
                ]
            )
        return out

    def represent(self, texts: Sequence[str]) -> list[Any]:
        from promptserve.models.llm.promptreps import represent

        return represent(
            self.graphs,
            self.tokenizer,
            self.manifest,
            list(texts),
            "passage",
            pad_id=self.config.pad_token_id,
            multiple=self.config.pad_to_multiple_of,
        )

    def run(self, plan: list[list[list[str]]], seconds: float, warmup: float) -> dict[str, Any]:
        """Closed loop over `plan` for `seconds` after `warmup`: texts/s, tokens/s, CPU."""

        def one(step: list[list[str]]) -> tuple[int, int]:
            reps = [r for group in step for r in self.represent(group)]
            return len(reps), sum(r.tokens for r in reps)

        k, t0 = 0, time.perf_counter()
        while True:  # warm-up: at least one step
            one(plan[k % len(plan)])
            k += 1
            if time.perf_counter() - t0 >= warmup:
                break
        texts = tokens = 0
        times: list[float] = []
        cpu = CpuWindow().start()
        t0 = time.perf_counter()
        while not times or time.perf_counter() - t0 < seconds:
            t = time.perf_counter()
            n, tok = one(plan[k % len(plan)])
            times.append(time.perf_counter() - t)
            texts, tokens, k = texts + n, tokens + tok, k + 1
        wall = time.perf_counter() - t0
        used = cpu.stop()
        return {
            "texts": texts,
            "tokens": tokens,
            "seconds": wall,
            "texts_per_s": texts / wall,
            "tokens_per_s": tokens / wall,
            # a bare deployment is this process alone
            "texts_per_cpu_s": texts / used["client_s"] if used["client_s"] else None,
            "cpu": used,
            **latency_stats(times),  # per step: N texts
        }


# -- 1. encode: served ----------------------------------------------------------------------------


async def served_point(
    client: Any, texts: Sequence[str], n: int, seconds: float, prompt_id: str, per_request: int
) -> dict[str, Any]:
    """`n` workers each embed `per_request` passages in one call, await it, send the next,
    until `seconds` have passed; calls in flight then finish. Texts/s = texts done / (last
    finish - start)."""
    from promptserve import PromptServeError

    done: list[tuple[float, float, int, int]] = []  # (start, end, texts, tokens)
    errors: list[str] = []
    counter = iter(range(1 << 62))
    t0 = time.perf_counter()
    deadline = t0 + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            at = next(counter) * per_request
            batch = [texts[(at + j) % len(texts)] for j in range(per_request)]
            start = time.perf_counter()
            try:
                out = await client.embed(batch, prompt_id=prompt_id, kind="passage")
            except PromptServeError as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            tokens = sum(e.tokens for e in out.data)
            done.append((start, time.perf_counter(), len(out.data), tokens))

    cpu = CpuWindow().start()
    await asyncio.gather(*(worker() for _ in range(n)))
    used = cpu.stop()
    wall = max((d[1] for d in done), default=time.perf_counter()) - t0
    count, tokens = sum(d[2] for d in done), sum(d[3] for d in done)
    return {
        "texts": count,
        "tokens": tokens,
        "requests": len(done),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:3],
        "seconds": wall,
        "texts_per_s": count / wall,
        "tokens_per_s": tokens / wall,
        "texts_per_cpu_s": count / used["total_s"] if used["total_s"] else None,
        "cpu": used,
        **latency_stats([d[1] - d[0] for d in done]),  # per request
    }


def app_config(bundle_dir: Path, workdir: Path, args: argparse.Namespace) -> Any:
    from promptserve.serving.config import AppConfig

    return AppConfig.model_validate(
        {
            "bundle": str(bundle_dir),
            "topology": args.topology,
            "log_level": "WARNING",
            "engine": {"name": "onnxruntime", "threads": args.engine_threads},
            "http": {"host": "127.0.0.1", "port": args.port or _free_port()},
            "gateway": {"num_cpus": 0.5},
            "encoder": {
                "num_cpus": 1.0,
                "max_batch_tokens": args.max_batch_tokens,
                "batch_wait_timeout_s": args.batch_wait_ms / 1000,
            },
            "prompts": {"store": str(workdir / "store")},
            "index": {"path": str(workdir / "indexes")},
            "auth": {"api_keys": [], "api_keys_env": None},
        }
    )


def check_same_work(client_out: Any, bare_out: Sequence[Any]) -> None:
    """The two paths must compute the same thing, or the ratio compares different work."""
    for got, want in zip(client_out.data, bare_out, strict=True):
        if got.tokens != want.tokens or got.sparse.indices != want.indices.tolist():
            raise SystemExit("served and bare representations differ: not the same work")
        if not np.allclose(got.dense, want.dense, atol=1e-4):
            raise SystemExit("served and bare dense vectors differ by more than 1e-4")


def bench_encode(bundle_dir: Path, args: argparse.Namespace, report: dict) -> dict[str, Any]:
    from promptserve import AsyncClient, Client
    from promptserve.models.bundle import Bundle
    from promptserve.models.llm.artifacts import builtin_prompt

    bundle = Bundle(bundle_dir)
    prompt = builtin_prompt(args.prompt, bundle.backbone_id)
    texts = synthetic_passages(args.texts, seed=args.seed)
    bare = BareEncoder(bundle_dir, prompt, args.engine_threads, args.max_batch_tokens)
    lengths = bare.lengths(texts)
    words = [len(t.split()) for t in texts]
    out: dict[str, Any] = {
        "prompt": args.prompt,
        "prompt_content_id": prompt.content_id,
        "texts": {
            "count": len(texts),
            "words": _spread(words),
            "tokens_read": _spread(lengths),
        },
        "rounds": [],
    }
    print(
        f"[encode] {len(texts)} passages: words {out['texts']['words']}, tokens read "
        f"(prompt + text) {out['texts']['tokens_read']}",
        flush=True,
    )
    plans = {n: bare.plan(texts, lengths, n * args.texts_per_request) for n in args.concurrencies}
    workdir = Path(tempfile.mkdtemp(prefix="promptserve-retrieve-"))
    config = app_config(bundle_dir, workdir, args)
    report["config"]["app_config"] = config.model_dump(mode="json")
    with served_app(config, workdir, num_cpus=args.ray_cpus) as url:
        with Client(url, timeout=120) as client:
            manifest = json.loads(prompt.manifest.model_dump_json())
            client.register_prompt((manifest, None), prompt_id="reps")
            check_same_work(
                client.embed(texts[:4], prompt_id="reps", kind="passage"), bare.represent(texts[:4])
            )
        print("[encode] served and bare representations agree (4 passages)", flush=True)
        asyncio.run(_encode_rounds(url, AsyncClient, bare, plans, texts, args, out))
    bare.graphs.close()
    out["summary"] = _encode_summary(out["rounds"], args.concurrencies)
    return out


async def _encode_rounds(
    url: str,
    client_cls: Any,
    bare: BareEncoder,
    plans: dict[int, list[list[list[str]]]],
    texts: list[str],
    args: argparse.Namespace,
    out: dict[str, Any],
) -> None:
    import httpx

    most = max(args.concurrencies)
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=most + 4), timeout=120)
    async with client_cls(url, timeout=120, max_retries=0, http_client=http) as client:
        await client.model_info()
        for r in range(args.rounds):
            row: dict[str, Any] = {}
            for n in args.concurrencies if r % 2 == 0 else args.concurrencies[::-1]:
                paths = ("bare", "served") if r % 2 == 0 else ("served", "bare")
                for path in paths:
                    if path == "bare":
                        point = bare.run(plans[n], args.seconds, args.warmup_seconds)
                    else:
                        t = args.texts_per_request
                        await served_point(client, texts, n, args.warmup_seconds, "reps", t)
                        point = await served_point(client, texts, n, args.seconds, "reps", t)
                    row[f"{path} c={n}"] = point
                    print(
                        f"[encode] round {r + 1} {path:>6} c={n:<3} {point['texts_per_s']:8.1f} "
                        f"texts/s {point['tokens_per_s']:9.0f} tok/s  "
                        f"{point['texts_per_cpu_s'] or 0:7.1f} texts/CPU-s  p50 "
                        f"{point['p50_ms'] or 0:7.1f} ms  errors {point.get('errors', 0)}  "
                        f"others {point['cpu']['others_cores']:.2f} cores",
                        flush=True,
                    )
            out["rounds"].append(row)
    await http.aclose()


def _spread(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {
        "min": float(a.min()),
        "p50": float(np.median(a)),
        "mean": round(float(a.mean()), 1),
        "p90": float(np.percentile(a, 90)),
        "max": float(a.max()),
    }


def _encode_summary(rounds: list[dict], concurrencies: Sequence[int]) -> list[dict[str, Any]]:
    """Per concurrency: medians over rounds of each path, and the median of the per-round
    served ÷ bare ratios (each round's pair ran back to back)."""
    rows = []
    for n in concurrencies:
        b = [r[f"bare c={n}"] for r in rounds]
        s = [r[f"served c={n}"] for r in rounds]

        def med(points: list[dict], key: str) -> float | None:
            vals = [p[key] for p in points if p.get(key) is not None]
            return statistics.median(vals) if vals else None

        ratio = [x["texts_per_s"] / y["texts_per_s"] for x, y in zip(s, b, strict=True)]
        cpu_ratio = [
            x["texts_per_cpu_s"] / y["texts_per_cpu_s"]
            for x, y in zip(s, b, strict=True)
            if x["texts_per_cpu_s"] and y["texts_per_cpu_s"]
        ]
        rows.append(
            {
                "concurrency": n,
                **{f"bare_{k}": med(b, k) for k in ("texts_per_s", "tokens_per_s", "texts_per_cpu_s", "p50_ms", "p99_ms")},
                **{f"served_{k}": med(s, k) for k in ("texts_per_s", "tokens_per_s", "texts_per_cpu_s", "p50_ms", "p99_ms")},
                "served_errors": sum(p["errors"] for p in s),
                "served_over_bare": statistics.median(ratio),
                "served_over_bare_per_round": ratio,
                "served_over_bare_per_cpu_s": statistics.median(cpu_ratio) if cpu_ratio else None,
                "served_cores_by_role": {
                    role: round(statistics.median(p["cpu"][f"{role}_s"] / p["cpu"]["wall_s"] for p in s), 2)
                    for role in ROLES
                },
                "others_cores": statistics.median(p["cpu"]["others_cores"] for p in b + s),
            }
        )  # fmt: skip
    return rows


# -- 2. index: synthetic data ---------------------------------------------------------------------


class SyntheticVectors:
    """PromptReps-shaped vectors, seeded, generated chunk by chunk (1M fits in memory only as
    the engine holds it, not twice).

    Dense vectors have a low intrinsic dimension, as model embeddings do (tens of directions
    carry most of the variance): a `latent`-dimensional Gaussian through a fixed random
    projection to `dim`, plus isotropic noise carrying `noise` of the energy, L2-normalised.
    `latent=0` gives isotropic vectors, on which every neighbour is a near-tie: the worst case
    for HNSW and no model's output. Exact search costs the same on either."""

    def __init__(
        self,
        dim: int,
        seed: int,
        *,
        latent: int = 32,
        noise: float = 0.1,
        zipf_s: float = 1.0,
        zipf_q: float = 50.0,
    ) -> None:
        self.dim, self.latent, self.noise = dim, latent, noise
        self.rng = np.random.default_rng(seed)
        ranks = np.arange(1, VOCAB + 1, dtype=np.float64)
        p = 1.0 / (ranks + zipf_q) ** zipf_s  # Zipf-Mandelbrot over term ranks
        self.cdf = np.cumsum(p / p.sum())
        self.ids = self.rng.permutation(VOCAB).astype(np.int64)  # rank -> vocabulary id
        if latent:
            basis = self.rng.standard_normal((latent, dim)).astype(np.float32)
            self.basis = basis / np.linalg.norm(basis, axis=1, keepdims=True)

    def dense(self, n: int) -> np.ndarray:
        x = self.rng.standard_normal((n, self.dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        if self.latent:
            z = self.rng.standard_normal((n, self.latent), dtype=np.float32) @ self.basis
            z /= np.linalg.norm(z, axis=1, keepdims=True)
            x = np.sqrt(1 - self.noise) * z + np.sqrt(self.noise) * x
            x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x

    def sparse(self, n: int, median: float, low: int, high: int) -> list[Any]:
        """`n` vectors of distinct ids, lengths lognormal around `median` in [low, high];
        weights log1p(relu(logit)) with logits ~ Gamma(2, 2), so mostly 0.5-3."""
        from promptserve.serving.index.base import SparseVector

        lengths = np.clip(np.rint(self.rng.lognormal(np.log(median), 0.5, n)), low, high)
        lengths = lengths.astype(int)
        draws = np.searchsorted(self.cdf, self.rng.random(int(lengths.sum() * 2) + 64))
        draws = self.ids[np.minimum(draws, VOCAB - 1)]
        weights = np.log1p(self.rng.gamma(2.0, 2.0, int(lengths.sum()))).astype(np.float32)
        out, at, wat = [], 0, 0
        for length in lengths:
            take = draws[at : at + 2 * length]
            at += 2 * length
            _, first = np.unique(take, return_index=True)
            terms = take[np.sort(first)][:length]  # distinct, in draw order
            out.append(SparseVector(terms, weights[wat : wat + len(terms)]))
            wat += length
        return out

    def documents(self, n: int) -> tuple[np.ndarray, list[Any]]:
        return self.dense(n), self.sparse(n, 60.0, 1, SPARSE_TOP_K)

    def queries(self, n: int) -> tuple[np.ndarray, list[Any]]:
        return self.dense(n), self.sparse(n, 7.0, 3, 20)


# -- 2. index: build and query --------------------------------------------------------------------


def build(
    index: Any, data: SyntheticVectors, n: int, batch: int, budget_s: float, label: str
) -> dict[str, Any]:
    """`n` documents written `batch` at a time; only the engine's `upsert` calls are timed
    (generating the synthetic vectors is not). Stops early past `budget_s` of writing."""
    written, spent, cpu_spent = 0, 0.0, 0.0
    cpu = CpuWindow().start()
    last_print = time.perf_counter()
    while written < n:
        m = min(batch, n - written)
        dense, sparse = data.documents(m)
        ids = [f"doc{i}" for i in range(written, written + m)]
        t, c = time.perf_counter(), time.process_time()
        index.upsert(ids, dense, sparse)
        spent += time.perf_counter() - t
        cpu_spent += time.process_time() - c
        written += m
        if time.perf_counter() - last_print > 30:
            last_print = time.perf_counter()
            print(
                f"[index] {label}: {written}/{n} written, {written / spent:.0f} docs/s", flush=True
            )
        if spent > budget_s and written < n:
            print(
                f"[index] {label}: build budget {budget_s:.0f}s spent at {written} docs", flush=True
            )
            break
    load = cpu.stop()
    return {
        "documents": written,
        "asked": n,
        "complete": written == n,
        "upsert_seconds": round(spent, 2),
        "docs_per_s": written / spent,
        "upsert_cpu_seconds": round(cpu_spent, 2),
        "others_cores": load["others_cores"],
        "extrapolated_seconds_for_asked": None if written == n else round(n / (written / spent), 0),
    }


Search = Callable[[int], list[tuple[str, float]]]


def hybrid_search(index: Any, pool: ThreadPoolExecutor, dq: np.ndarray, sq: Any, k: int) -> list:
    """The indexer's hybrid: dense and sparse runs to depth `DEPTH` at once (two threads, as
    serving/deployments/indexer.py::Indexer.search gathers them), then the PromptReps fusion."""
    from promptserve.serving.index.fusion import hybrid

    fd = pool.submit(index.search, "dense", dense=dq[None], k=max(k, DEPTH))
    fs = pool.submit(index.search, "sparse", sparse=[sq], k=max(k, DEPTH))
    return hybrid(fd.result()[0], fs.result()[0], alpha=0.5, k=k)


def query_modes(
    index: Any, pool: ThreadPoolExecutor, queries: tuple[np.ndarray, list[Any]], k: int
) -> dict[str, Search]:
    dq, sq = queries
    return {
        "dense": lambda i: index.search("dense", dense=dq[i : i + 1], k=k)[0],
        "sparse": lambda i: index.search("sparse", sparse=[sq[i]], k=k)[0],
        "hybrid": lambda i: hybrid_search(index, pool, dq[i], sq[i], k),
    }


def time_queries(modes: dict[str, Search], n: int) -> tuple[dict[str, dict], dict[str, list]]:
    """One query per call, modes interleaved (the order rotates per query), after one warm-up
    pass of each mode. Returns per-mode latency stats and the hits."""
    names = list(modes)
    for name in names:
        modes[name](0)
    times: dict[str, list[float]] = {m: [] for m in names}
    hits: dict[str, list] = {m: [] for m in names}
    cpu = CpuWindow().start()
    for i in range(n):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            t = time.perf_counter()
            result = modes[name](i)
            times[name].append(time.perf_counter() - t)
            hits[name].append(result)
    load = cpu.stop()
    stats = {
        m: {
            **latency_stats(times[m]),
            "queries": n,
            "mean_hits": float(np.mean([len(h) for h in hits[m]])),
        }
        for m in names
    }
    for m in names:
        stats[m]["others_cores"] = load["others_cores"]
    return stats, hits


def recall_at(approx: list[list], exact: list[list], k: int = 10) -> float:
    return float(
        np.mean([len({d for d, _ in a[:k]} & {d for d, _ in e[:k]}) / k for a, e in zip(approx, exact, strict=True)])
    )  # fmt: skip


def _du_mb(path: Path) -> float:
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return round(total / 2**20, 1)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def bench_edge(n: int, dim: int, args: argparse.Namespace, *, hnsw: bool) -> dict[str, Any]:
    """Qdrant Edge (the embedded default) at `n` documents of width `dim`."""
    from promptserve.serving.index.base import create_engine
    from promptserve.serving.index.config import IndexEngineConfig

    root = Path(tempfile.mkdtemp(prefix="promptserve-bench-index-", dir=args.work_dir))
    label = f"qdrant-edge {n} x {dim}"
    try:
        config = IndexEngineConfig(engine="qdrant-edge", path=str(root), exact=True)
        engine = create_engine(config)
        index = engine.create("bench", dim)
        data = SyntheticVectors(dim, args.seed + n, latent=args.latent_dim, noise=args.noise)
        rss0 = _rss_mb()
        built = build(index, data, n, args.build_batch, args.build_budget_s, label)
        out: dict[str, Any] = {
            "engine": "qdrant-edge",
            "documents": built["documents"],
            "dim": dim,
            "build": built,
            "count": index.count(),
            "disk_mb": _du_mb(root),
            "rss_growth_mb": round(_rss_mb() - rss0, 1),
        }
        print(
            f"[index] {label}: built {built['documents']} docs at {built['docs_per_s']:.0f} docs/s "
            f"({built['upsert_seconds']:.0f} s writing), {out['disk_mb']} MB on disk",
            flush=True,
        )
        queries = data.queries(args.queries)
        with ThreadPoolExecutor(2) as pool:
            stats, hits = time_queries(query_modes(index, pool, queries, args.k), args.queries)
            out["queries"] = stats
            _print_queries(label + " exact", stats)
            if hnsw:
                out["approximate"] = _hnsw(index, pool, queries, hits, args, label)
        engine.close()
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _hnsw(
    index: Any,
    pool: ThreadPoolExecutor,
    queries: tuple[np.ndarray, list[Any]],
    exact_hits: dict[str, list],
    args: argparse.Namespace,
    label: str,
) -> dict[str, Any]:
    """Dense HNSW, as a Qdrant server runs `exact: false` (engine `qdrant`; the embedded
    engine refuses it by config: a shard has no background optimizer). Measured on the same
    Rust segment code in-process: the shard's `optimize()` builds the HNSW graph (Qdrant's
    defaults, m 16, ef_construct 100), then dense searches with `exact=False`, hybrid with that
    dense run, and exact dense again on the optimised segments, interleaved; recall@10 against
    the exact runs measured before. The engine has no API for this: the benchmark reaches the
    shard."""
    import qdrant_edge as qe

    from promptserve.serving.index.base import DENSE, DOC_ID
    from promptserve.serving.index.fusion import hybrid

    shard = getattr(index, "_shard", None)
    if shard is None or not hasattr(shard, "optimize"):
        return {"error": "the engine's index has no shard with optimize(); HNSW not measured"}
    out: dict[str, Any] = {}
    t = time.perf_counter()
    cpu = CpuWindow().start()
    out["optimized"] = bool(shard.optimize())
    load = cpu.stop()
    out["optimize_seconds"] = round(time.perf_counter() - t, 1)
    out["optimize_cpu_seconds"] = load["client_s"]
    out["optimize_others_cores"] = load["others_cores"]
    with contextlib.suppress(Exception):
        info = shard.info()
        out["segments"], out["indexed_vectors"] = info.segments_count, info.indexed_vectors_count
    print(f"[index] {label}: optimize() built HNSW in {out['optimize_seconds']} s", flush=True)
    dq, sq = queries
    params = qe.SearchParams(exact=False)

    def dense_hnsw(i: int, k: int) -> list[tuple[str, float]]:
        query = qe.Query.Nearest(dq[i].tolist(), using=DENSE)
        run = shard.query(qe.QueryRequest(limit=k, query=query, with_payload=True, params=params))
        return [(p.payload[DOC_ID], float(p.score)) for p in run]

    def hybrid_hnsw(i: int) -> list[tuple[str, float]]:
        fd = pool.submit(dense_hnsw, i, max(args.k, DEPTH))
        fs = pool.submit(index.search, "sparse", sparse=[sq[i]], k=max(args.k, DEPTH))
        return hybrid(fd.result(), fs.result()[0], alpha=0.5, k=args.k)

    exact = query_modes(index, pool, queries, args.k)
    modes: dict[str, Search] = {
        "dense": lambda i: dense_hnsw(i, args.k),
        "hybrid": hybrid_hnsw,
        "dense_exact_optimized": exact["dense"],
    }
    stats, hits = time_queries(modes, args.queries)
    for mode in ("dense", "hybrid"):
        stats[mode]["recall_at_10_vs_exact"] = recall_at(hits[mode], exact_hits[mode])
    out["hnsw"] = stats
    _print_queries(label + " after optimize()", stats)
    return out


def bench_local(n: int, dim: int, args: argparse.Namespace) -> dict[str, Any]:
    """The server engine's client code against qdrant-client's local mode (in-process, pure
    Python brute force): NOT a Qdrant server, which no installable package ships here."""
    from promptserve.serving.index.base import create_engine
    from promptserve.serving.index.config import IndexEngineConfig

    label = f"qdrant-client local {n} x {dim}"
    engine = create_engine(IndexEngineConfig(engine="qdrant", url=":memory:"))
    try:
        index = engine.create("bench", dim)
        data = SyntheticVectors(dim, args.seed + n, latent=args.latent_dim, noise=args.noise)
        built = build(index, data, n, args.build_batch, args.build_budget_s, label)
        out: dict[str, Any] = {
            "engine": "qdrant-client local mode (not a server)",
            "documents": built["documents"],
            "dim": dim,
            "build": built,
        }
        queries = data.queries(args.local_queries)
        with ThreadPoolExecutor(2) as pool:
            out["queries"], _ = time_queries(
                query_modes(index, pool, queries, args.k), args.local_queries
            )
        _print_queries(label, out["queries"])
        return out
    finally:
        engine.close()


def _print_queries(label: str, stats: dict[str, dict]) -> None:
    parts = [f"{m} p50 {s['p50_ms']:.2f} / p99 {s['p99_ms']:.2f} ms" for m, s in stats.items()]
    print(f"[index] {label}: " + ", ".join(parts), flush=True)


def bench_index(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = []
    largest = max(args.sizes)
    for n in args.sizes:
        dim = args.wide_dim if n <= args.wide_max_docs else args.narrow_dim
        out.append(bench_edge(n, dim, args, hnsw=args.hnsw and n == largest))
        if n <= args.local_max_docs:
            out.append(bench_local(n, dim, args))
    return out


# -- report ---------------------------------------------------------------------------------------


def _f(x: float | None, fmt: str = ".1f") -> str:
    return "–" if x is None else format(x, fmt)


def markdown(report: dict) -> str:
    m, cfg = report["machine"], report["config"]
    lines = [
        f"# retrieve — PromptReps encode and index, {report['timestamp']}",
        "",
        f"Machine: {m.get('cpu_model')}, {m.get('logical_cpus')} logical CPUs (usable "
        f"{m.get('usable_cpus')}), {m.get('ram_gib')} GiB RAM; Python {m.get('python')}, "
        f"onnxruntime {m.get('onnxruntime_version')}, ray {m.get('ray_version')}, "
        f"qdrant-edge-py {m.get('qdrant_edge_version')}, qdrant-client "
        f"{m.get('qdrant_client_version')}, numpy {m.get('numpy_version')}. Load average at "
        f"start {report['loadavg_start']}, at end {report.get('loadavg_end')}; the cores are "
        "shared with other work, so each point records the cores other processes used during it "
        "(`others`).",
        "",
    ]
    enc = report.get("encode")
    if enc:
        t, tpr = enc["texts"], cfg["texts_per_request"]
        lines += [
            "## 1. Encode throughput: served ÷ bare",
            "",
            f"**{report['model_note']}**",
            "",
            f"Passages: {t['count']} synthetic, words {t['words']['min']:.0f}-"
            f"{t['words']['max']:.0f} (median {t['words']['p50']:.0f}); tokens the model reads "
            f"(prompt `{enc['prompt']}` + text) median {t['tokens_read']['p50']:.0f}, max "
            f"{t['tokens_read']['max']:.0f}. Engine onnxruntime, {cfg['engine_threads']} intra-op "
            f"threads on both paths; encoder token budget {cfg['max_batch_tokens']}, batch wait "
            f"{cfg['batch_wait_ms']} ms, topology {cfg['topology']}, Ray logical CPUs "
            f"{cfg['ray_cpus']}. {cfg['rounds']} interleaved rounds of {cfg['seconds']} s per "
            f"point after {cfg['warmup_seconds']} s warm-up; medians over rounds.",
            "",
            f"Bare: `represent()` in this process on N x {tpr} passages at a time, cut into graph "
            "calls by the served encoder's `bucket()`; latency per step. Served: "
            f"`AsyncClient.embed(kind='passage')`, {tpr} passage(s) per request, N requests in "
            "flight; latency per request. Texts per CPU-second: bare counts this process, served "
            "every process of the run (client, proxy, gateway, encoder, indexer, Ray).",
            "",
            "| N | bare texts/s | served texts/s | **served ÷ bare** (per round) | bare tokens/s "
            "| served tokens/s | bare texts/CPU-s | served texts/CPU-s | bare p50 / p99 ms (step) "
            "| served p50 / p99 ms (request) | errors | others (cores) |",
            "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for s in enc["summary"]:
            per = ", ".join(f"{x:.2f}" for x in s["served_over_bare_per_round"])
            lines.append(
                f"| {s['concurrency']} | {_f(s['bare_texts_per_s'])} | {_f(s['served_texts_per_s'])} "
                f"| **{s['served_over_bare']:.2f}** ({per}) | {_f(s['bare_tokens_per_s'], '.0f')} "
                f"| {_f(s['served_tokens_per_s'], '.0f')} | {_f(s['bare_texts_per_cpu_s'])} "
                f"| {_f(s['served_texts_per_cpu_s'])} | {_f(s['bare_p50_ms'])} / {_f(s['bare_p99_ms'])} "
                f"| {_f(s['served_p50_ms'])} / {_f(s['served_p99_ms'])} | {s['served_errors']} "
                f"| {s['others_cores']:.2f} |"
            )
        lines += [
            "",
            "Served: cores busy by role (median over rounds):",
            "",
            "| N | " + " | ".join(ROLES) + " |",
            "|---:|" + "---:|" * len(ROLES),
        ]
        for s in enc["summary"]:
            c = s["served_cores_by_role"]
            lines.append(
                f"| {s['concurrency']} | " + " | ".join(f"{c[r]:.2f}" for r in ROLES) + " |"
            )
        lines.append("")
    idx = report.get("index")
    if idx:
        lines += [
            "## 2. Index: build rate and query latency",
            "",
            f"**{SYNTHETIC_NOTE.format(latent=cfg['latent_dim'], noise=cfg['noise'])}**",
            "",
            f"Dense width {cfg['wide_dim']} up to {cfg['wide_max_docs']} documents (Llama-3-8B's "
            f"hidden size), {cfg['narrow_dim']} above (so 1M fits in memory). Build: one `upsert` "
            f"(which flushes) per {cfg['build_batch']} documents, as one indexing request writes "
            f"(the SDK's chunk is 64); only the upserts are timed. Queries: one per call, "
            f"{cfg['queries']} per mode (local mode {cfg['local_queries']}), modes interleaved; "
            f"k = {cfg['k']}; hybrid = dense and sparse runs to depth {DEPTH} in two threads, "
            "fused by serving/index/fusion.py::hybrid (alpha 0.5), as the indexer does.",
            "",
            "| engine | docs | dim | build docs/s | dense p50 / p99 ms | sparse p50 / p99 ms "
            "| hybrid p50 / p99 ms | **hybrid ÷ dense** (p50 / p99) | disk MB | others (cores) |",
            "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
        ]
        for row in idx:
            q, b = row["queries"], row["build"]
            docs = f"{row['documents']:,}" + ("" if b["complete"] else f" of {b['asked']:,}")
            lines.append(_index_line(row["engine"] + " (exact)", docs, row, q, b))
            hnsw = (row.get("approximate") or {}).get("hnsw")
            if hnsw:
                name = "HNSW, as `exact: false` on a Qdrant server (in-process, after optimize())"
                lines.append(_index_line(name, docs, row, hnsw, None))
        for row in idx:
            a = row.get("approximate") or {}
            if "error" in a:
                lines += ["", f"HNSW at {row['documents']:,} documents: {a['error']}."]
            if "hnsw" in a and not a["optimized"]:
                lines += [
                    "",
                    f"HNSW at {row['documents']:,} documents: `optimize()` built nothing (the "
                    "segment is below Qdrant's indexing threshold): the HNSW row is brute force.",
                ]
            elif "hnsw" in a:
                h = a["hnsw"]
                lines += [
                    "",
                    f"HNSW at {row['documents']:,} documents: `optimize()` took "
                    f"{a['optimize_seconds']} s ({a['optimize_cpu_seconds']} CPU-s; others "
                    f"{a['optimize_others_cores']} cores meanwhile); recall@10 against exact: "
                    f"dense **{h['dense']['recall_at_10_vs_exact']:.3f}**, hybrid "
                    f"**{h['hybrid']['recall_at_10_vs_exact']:.3f}**; exact dense on the "
                    f"optimised segments p50 {h['dense_exact_optimized']['p50_ms']:.2f} / p99 "
                    f"{h['dense_exact_optimized']['p99_ms']:.2f} ms. The embedded engine refuses "
                    "`exact: false` (no background optimizer); this row is what the same Rust "
                    "segment code does when a Qdrant server has built HNSW, without the network.",
                ]
        for row in idx:
            b = row["build"]
            if not b["complete"]:
                lines.append(
                    f"\nBuild of {b['asked']:,} stopped at the {report['config']['build_budget_s']:.0f} s "
                    f"budget with {b['documents']:,} written at {b['docs_per_s']:.0f} docs/s; "
                    f"EXTRAPOLATED: {b['extrapolated_seconds_for_asked']:.0f} s for all {b['asked']:,} "
                    "at that rate (queries above ran on what was written)."
                )
        lines.append("")
    return "\n".join(lines) + "\n"


def _index_line(name: str, docs: str, row: dict, q: dict, b: dict | None) -> str:
    def pp(mode: str) -> str:
        s = q.get(mode)
        return f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f}" if s else "–"

    ratio = "–"
    if "dense" in q and "hybrid" in q:
        ratio = (
            f"**{q['hybrid']['p50_ms'] / q['dense']['p50_ms']:.2f}** / "
            f"{q['hybrid']['p99_ms'] / q['dense']['p99_ms']:.2f}"
        )
    others = next(iter(q.values()))["others_cores"]
    return (
        f"| {name} | {docs} | {row['dim']} | {_f(b['docs_per_s'] if b else None, '.0f')} | {pp('dense')} "
        f"| {pp('sparse')} | {pp('hybrid')} | {ratio} | {row.get('disk_mb', '–')} | {others:.2f} |"
    )


# -- main -----------------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    values = [int(v) for v in text.replace("_", "").split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("model (encode part)")
    g.add_argument("--model-dir", type=Path, help="a Hugging Face causal LM folder (local-dir:)")
    g.add_argument("--tiny-arch", default="llama", choices=["llama", "qwen2"])
    g.add_argument("--prompt", default="llama3", help="built-in PromptReps prompt")
    g.add_argument("--seed", type=int, default=0, help="tiny-model weights and synthetic data")
    g.add_argument("--cache-dir", type=Path, help="bundles (default ~/.cache/promptserve/bench)")
    g = p.add_argument_group("encode")
    g.add_argument("--skip-encode", action="store_true")
    g.add_argument("--concurrencies", type=_ints, default=[1, 8, 32])
    g.add_argument("--texts", type=int, default=256, help="distinct passages cycled")
    g.add_argument(
        "--texts-per-request",
        type=int,
        default=1,
        help="passages per embed call (bare steps then take N x this many)",
    )
    g.add_argument("--rounds", type=int, default=3, help="interleaved bare/served rounds")
    g.add_argument("--seconds", type=float, default=8.0, help="measured seconds per point")
    g.add_argument("--warmup-seconds", type=float, default=2.0)
    g.add_argument("--engine-threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    g.add_argument("--max-batch-tokens", type=int, default=8192, help="encoder token budget")
    g.add_argument("--batch-wait-ms", type=float, default=5.0)
    g.add_argument("--topology", choices=["split", "fused"], default="split")
    g.add_argument("--ray-cpus", type=int, default=4, help="Ray logical CPUs")
    g.add_argument("--port", type=int, default=0, help="Serve HTTP port (0: a free one)")
    g.add_argument("--quick", action="store_true", help="1 round, 3 s points")
    g = p.add_argument_group("index")
    g.add_argument("--skip-index", action="store_true")
    g.add_argument("--sizes", type=_ints, default=[10_000, 100_000], help="documents")
    g.add_argument("--wide-dim", type=int, default=4096, help="dense width for small sizes")
    g.add_argument("--wide-max-docs", type=int, default=10_000, help="largest size at wide-dim")
    g.add_argument("--narrow-dim", type=int, default=256, help="dense width above that")
    g.add_argument("--build-batch", type=int, default=64, help="documents per upsert")
    g.add_argument("--build-budget-s", type=float, default=900.0, help="stop a build past this")
    g.add_argument("--queries", type=int, default=200, help="queries per mode")
    g.add_argument("--k", type=int, default=10)
    g.add_argument(
        "--latent-dim",
        type=int,
        default=32,
        help="intrinsic dimension of the synthetic dense vectors (0: isotropic, HNSW's worst case)",
    )
    g.add_argument("--noise", type=float, default=0.1, help="isotropic share of their energy")
    g.add_argument("--no-hnsw", dest="hnsw", action="store_false", help="skip HNSW")
    g.add_argument("--local-max-docs", type=int, default=10_000, help="qdrant-client local up to")
    g.add_argument("--local-queries", type=int, default=50)
    g.add_argument("--work-dir", type=Path, default=None, help="where index shards are written")
    p.add_argument("--out-dir", type=Path, default=HERE / "results")
    p.add_argument(
        "--tag",
        default="",
        help="results as retrieve-TAG-*.{md,json}, e.g. --tag 1m, so a long index-only run "
        "does not replace the default run's retrieve-latest",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds, args.warmup_seconds = 1, 3.0, 1.0
    return args


def _sigterm(*_: object) -> None:
    raise KeyboardInterrupt  # so the finally blocks shut Serve and Ray down


@contextlib.contextmanager
def _timer(label: str) -> Iterator[None]:
    t = time.perf_counter()
    yield
    print(f"{label} took {time.perf_counter() - t:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a loopback cluster, torn down after
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    signal.signal(signal.SIGTERM, _sigterm)
    from promptserve.models.llm.export.seeded import default_cache_dir

    started = datetime.now().astimezone()
    report: dict[str, Any] = {
        "benchmark": "retrieve",
        "timestamp": started.isoformat(timespec="seconds"),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "machine": machine_info(args.engine_threads),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    for module in ("qdrant_edge", "qdrant_client", "tokenizers"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            dist = {"qdrant_edge": "qdrant-edge-py", "qdrant_client": "qdrant-client"}
            report["machine"][f"{module}_version"] = version(dist.get(module, module))
    try:
        if not args.skip_encode:
            if args.model_dir:
                spec = f"local-dir:{args.model_dir.resolve()}"
                report["model_note"] = REAL_NOTE.format(spec=spec)
            else:
                spec = f"tiny:{args.tiny_arch}:{args.seed}"
                report["model_note"] = TINY_NOTE.format(arch=args.tiny_arch, seed=args.seed)
            print(report["model_note"], flush=True)
            bundle_dir = ensure_bundle(spec, args.cache_dir or default_cache_dir() / "bench")
            report["model"] = {"spec": spec, "bundle": str(bundle_dir)}
            with _timer("encode part"):
                report["encode"] = bench_encode(bundle_dir, args, report)
        if not args.skip_index:
            with _timer("index part"):
                report["index"] = bench_index(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    report["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    md = markdown(report)
    name = f"retrieve-{args.tag}" if args.tag else "retrieve"
    written = save_report(name, report, md, args.out_dir)
    print("\n" + md)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
