#!/usr/bin/env python
"""Benchmark: bare ONNX Runtime engine vs the served HTTP path, for ViT-B-32 classification.

One run measures, on this machine:

1. the bare engine (`ClipGraphs.create("onnxruntime", ...).encode_image`) at batch 1, 8 and 32:
   images/s and per-call latency;
2. the served path over real HTTP (Ray Serve started in-process, one templates prompt,
   one 224x224 JPEG per request to `POST /v1/classify`) at concurrency 1, 8 and 32:
   images/s, per-request latency, errors and the mean vision batch size (from the
   `x-promptserve-batch-images` header);
3. one "mixed prompts" point: the highest concurrency with requests cycling over 4 prompts.

The backbone is open_clip's ViT-B-32 with SEEDED RANDOM WEIGHTS (no weights can be downloaded
here), exported once to an ONNX bundle under ~/.cache/promptserve/bench/ and reused. Random
weights cost exactly what real ones do, but the predicted labels are meaningless.

Results go to benchmarks/results/serve_classify-<YYYYmmdd-HHMM>.{json,md} and
serve_classify-latest.{json,md} (plus a PNG bar chart when matplotlib is importable).

Example:
    python benchmarks/serve_classify.py --quick          # ~3 s per point, a smoke run
    python benchmarks/serve_classify.py --seconds 20     # steadier numbers
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import io
import itertools
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
BATCH_HEADER = "x-promptserve-batch-images"
WEIGHTS_NOTE = (
    "RANDOM WEIGHTS: the backbone is open_clip {arch} with seeded random initialisation "
    "(seed {seed}); compute cost equals real weights, but predicted labels are meaningless."
)
TEMPLATE = "a photo of a {}."
# Four disjoint ImageNet-like class lists (10 names each); prompt 0 is the single-prompt case.
CLASS_SETS = [
    ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead", "electric ray",
     "stingray", "cock", "hen", "ostrich"],
    ["brambling", "goldfinch", "house finch", "junco", "indigo bunting", "robin", "bulbul",
     "jay", "magpie", "chickadee"],
    ["water ouzel", "kite", "bald eagle", "vulture", "great grey owl", "fire salamander",
     "common newt", "eft", "spotted salamander", "axolotl"],
    ["bullfrog", "tree frog", "tailed frog", "loggerhead", "leatherback turtle", "mud turtle",
     "terrapin", "box turtle", "banded gecko", "common iguana"],
]  # fmt: skip


# -- inputs ---------------------------------------------------------------------------------------


def make_jpeg(seed: int, size: int = 224, quality: int = 90) -> bytes:
    """A seeded random but smooth, photo-like RGB image (low-frequency waves + mild noise)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    channels = []
    for _ in range(3):
        fx, fy = rng.uniform(0.3, 2.5, 2)
        px, py = rng.uniform(0, 2 * np.pi, 2)
        wave = np.sin(2 * np.pi * fx * xx + px) * np.cos(2 * np.pi * fy * yy + py)
        channels.append(128 + 70 * wave + rng.uniform(-40, 40) * (xx - yy))
    pixels = np.stack(channels, -1) + rng.normal(0, 5, (size, size, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
        buf, format="JPEG", quality=quality
    )
    return buf.getvalue()


_EXPORT = """
import sys
from pathlib import Path
from promptserve.models.clip.export.onnx import export_bundle
from promptserve.models.clip.export.seeded import seeded_backbone
arch, seed, cache, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
export_bundle(seeded_backbone(arch, seed=seed, directory=cache / "backbones"), out)
"""


def ensure_bundle(arch: str, seed: int, cache: Path) -> Path:
    """The ONNX bundle of `arch` with seeded random weights, exported once and reused.

    The export runs in a child process: torch left loaded in this process was seen to halve
    the bare engine's throughput on a 2-core machine.
    """
    from promptserve.models.bundle import BUNDLE_FILE

    out = cache / f"{arch}-seed{seed}"
    if (out / BUNDLE_FILE).exists():
        if (json.loads((out / BUNDLE_FILE).read_text()).get("deep_prompts") or {}).get(
            "image_tokens"
        ):
            print(f"reusing bundle {out}", flush=True)
            return out
        print(f"{out} predates the prompted graphs; exporting it again", flush=True)
    print(
        f"exporting {arch} (seeded random weights, seed {seed}) to {out}; this takes minutes ...",
        flush=True,
    )
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        cmd = [sys.executable, "-c", _EXPORT, arch, str(seed), str(cache), str(tmp)]
        subprocess.run(cmd, check=True)
        shutil.rmtree(out, ignore_errors=True)  # a partial leftover without bundle.json
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# -- statistics -----------------------------------------------------------------------------------


def latency_stats(seconds: list[float]) -> dict[str, float | None]:
    if not seconds:
        return {"p50_ms": None, "p99_ms": None, "mean_ms": None, "max_ms": None}
    ms = np.asarray(seconds) * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "max_ms": float(ms.max()),
    }


# -- 1. bare engine -------------------------------------------------------------------------------


def bench_engine(
    bundle_dir: Path, jpegs: list[bytes], args: argparse.Namespace
) -> list[dict[str, Any]]:
    from promptserve.images import crop_uint8, decode_image, normalize
    from promptserve.models.bundle import Bundle
    from promptserve.models.clip.runtime import ClipGraphs
    from promptserve.serving.engines.base import EngineOptions

    bundle = Bundle(bundle_dir)
    pre = bundle.manifest.config.preprocess
    need = max(args.batches)
    crops = np.stack(
        [
            crop_uint8(decode_image(b), size=pre.size, interpolation=pre.interpolation)
            for b in jpegs[:need]
        ]
    )
    pixels = normalize(crops, mean=pre.mean, std=pre.std)  # float32 [need, 3, S, S]
    engine = ClipGraphs.create(
        "onnxruntime",
        bundle,
        EngineOptions(threads=args.engine_threads, allow_spinning=args.allow_spinning),
    )
    print(
        f"\n[engine] onnxruntime {engine.providers}, intra-op threads {args.engine_threads}",
        flush=True,
    )
    points = []
    try:
        for batch in args.batches:
            x = np.ascontiguousarray(pixels[:batch])
            started = time.perf_counter()
            while True:  # warm-up: at least one call, then until --warmup-seconds
                engine.encode_image(x)
                if time.perf_counter() - started >= args.warmup_seconds:
                    break
            times: list[float] = []
            t0, cpu0 = time.perf_counter(), time.process_time()
            while len(times) < args.min_calls or time.perf_counter() - t0 < args.seconds:
                t = time.perf_counter()
                engine.encode_image(x)
                times.append(time.perf_counter() - t)
            elapsed = time.perf_counter() - t0
            cores = (time.process_time() - cpu0) / elapsed
            point = {
                "batch": batch,
                "calls": len(times),
                "images": batch * len(times),
                "seconds": elapsed,
                "images_per_s": batch * len(times) / elapsed,
                **latency_stats(times),
                "cpu_cores_busy": round(cores, 3),
            }
            points.append(point)
            print(
                f"[engine] batch {batch:>3}: {point['images_per_s']:7.2f} img/s  "
                f"p50 {point['p50_ms']:8.1f} ms  p99 {point['p99_ms']:8.1f} ms  ({len(times)} calls, "
                f"{cores:.2f} cores busy)",
                flush=True,
            )
    finally:
        del engine
        gc.collect()
    return points


# -- CPU accounting from /proc (which process is busy while the served path runs) ------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (ppid, cpu seconds) for every readable process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                rest = f.read().rsplit(b")", 1)[1].split()
            table[int(entry)] = (int(rest[1]), (int(rest[11]) + int(rest[12])) / _CLK_TCK)
        except (OSError, IndexError, ValueError):
            continue
    return table


def _role(pid: int) -> str:
    if pid == os.getpid():
        return "client"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "ray_other"
    for key, role in (
        (":encoder", "encoder"),
        (":gateway", "gateway"),
        (":indexer", "indexer"),  # the LLM family's index holder (benchmarks/retrieve.py)
        ("ProxyActor", "proxy"),
        ("ServeController", "controller"),
    ):
        if key in cmd:
            return role
    return "ray_other"  # raylet, gcs_server, idle workers, agents


def _descendants(table: dict[int, tuple[int, float]], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = set(), [root]
    while todo:
        pid = todo.pop()
        out.add(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_snapshot() -> dict[int, tuple[str, float]]:
    """pid -> (role, cpu seconds) for this process and every process it started (Ray)."""
    table = _proc_table()
    return {
        pid: (_role(pid), table[pid][1]) for pid in _descendants(table, os.getpid()) if pid in table
    }


def cpu_cores_used(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], wall: float
) -> dict[str, float]:
    """Average cores busy per role between two snapshots."""
    used: Counter[str] = Counter()
    for pid, (role, cpu) in after.items():
        used[role] += cpu - (before[pid][1] if pid in before else 0.0)
    cores = {
        role: round(used[role] / wall, 3)
        for role in ("encoder", "gateway", "proxy", "client", "controller", "ray_other")
    }
    cores["total"] = round(sum(used.values()) / wall, 3)
    return cores


# -- 2./3. served path ----------------------------------------------------------------------------


@dataclass
class Sample:
    start: float
    end: float
    status: int
    batches: list[int] = field(default_factory=list)
    error: str | None = None


async def _drive(
    client, url: str, bodies: list[list[bytes]], concurrency: int, n_prompts: int, seconds: float
) -> tuple[list[Sample], float]:
    """Closed loop: `concurrency` workers each send a request, await it, send the next, until
    `seconds` have passed; requests in flight then finish (idle to idle). Request i uses
    prompt i % n_prompts."""
    import httpx

    samples: list[Sample] = []
    counter = itertools.count()
    headers = {"content-type": "application/json"}
    t0 = time.perf_counter()
    deadline = t0 + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            i = next(counter)
            prompt = i % n_prompts
            body = bodies[prompt][(i // n_prompts) % len(bodies[prompt])]
            start = time.perf_counter()
            try:
                r = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                samples.append(
                    Sample(start, time.perf_counter(), 0, error=f"{type(exc).__name__}: {exc}")
                )
                continue
            end = time.perf_counter()
            if r.status_code == 200:
                batches = [int(b) for b in r.headers.get(BATCH_HEADER, "").split(",") if b.strip()]
                samples.append(Sample(start, end, 200, batches))
            else:
                samples.append(Sample(start, end, r.status_code, error=r.text[:300]))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples, t0


async def _served_points(
    url: str, bodies: list[list[bytes]], plan: list[dict[str, Any]], args: argparse.Namespace
) -> list[dict]:
    import httpx

    most = max(p["concurrency"] for p in plan)
    limits = httpx.Limits(max_connections=most + 4, max_keepalive_connections=most + 4)
    async with httpx.AsyncClient(
        limits=limits, timeout=httpx.Timeout(args.request_timeout)
    ) as client:
        # One checked request first: the whole response must parse and carry the batch header.
        r = await client.post(
            url, content=bodies[0][0], headers={"content-type": "application/json"}
        )
        if r.status_code != 200:
            raise RuntimeError(
                f"first classify request failed: HTTP {r.status_code}: {r.text[:500]}"
            )
        body = r.json()
        if (
            len(body["results"]) != 1
            or len(body["labels"]) != len(CLASS_SETS[0])
            or BATCH_HEADER not in r.headers
        ):
            raise RuntimeError(
                f"unexpected classify response: {r.text[:500]} headers={dict(r.headers)}"
            )
        top = body["results"][0]["top"][0]
        print(
            f"[served] sanity request ok: top-1 {top['label']!r} p={top['score']:.3f} (random weights)",
            flush=True,
        )

        points = []
        for p in plan:
            conc, n_prompts = p["concurrency"], p["prompts"]
            await _drive(client, url, bodies, conc, n_prompts, args.warmup_seconds)
            before = cpu_snapshot()
            samples, t0 = await _drive(client, url, bodies, conc, n_prompts, args.seconds)
            t_end = max(s.end for s in samples)
            wall = t_end - t0
            cores = cpu_cores_used(before, cpu_snapshot(), wall)
            ok = [s for s in samples if s.status == 200]
            sizes = [b for s in ok for b in s.batches]
            errors = Counter(f"{s.status}: {s.error}" for s in samples if s.status != 200)
            point = {
                "name": p["name"],
                "concurrency": conc,
                "prompts": n_prompts,
                "requests": len(samples),
                "ok": len(ok),
                "errors": len(samples) - len(ok),
                "error_examples": [f"{k} (x{v})" for k, v in errors.most_common(3)],
                "seconds": wall,
                "images_per_s": len(ok) / wall,  # one image per request
                **latency_stats([s.end - s.start for s in ok]),
                "mean_batch_images": float(np.mean(sizes)) if sizes else None,
                "batch_images_histogram": {str(k): v for k, v in sorted(Counter(sizes).items())},
                "littles_law_images_per_s": conc / float(np.mean([s.end - s.start for s in ok]))
                if ok
                else None,
                "cpu_cores_busy": cores,
            }
            points.append(point)
            mb = point["mean_batch_images"]
            print(
                f"[served] {p['name']:<16} c={conc:>3}: {point['images_per_s']:7.2f} img/s  "
                f"p50 {point['p50_ms'] or float('nan'):8.1f} ms  p99 {point['p99_ms'] or float('nan'):8.1f} ms  "
                f"mean batch {mb if mb is not None else float('nan'):5.1f}  errors {point['errors']}  "
                f"cores: enc {cores['encoder']:.2f} gw {cores['gateway']:.2f} proxy {cores['proxy']:.2f} "
                f"client {cores['client']:.2f} total {cores['total']:.2f}",
                flush=True,
            )
        return points


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_served(
    bundle_dir: Path, jpegs: list[bytes], args: argparse.Namespace, report: dict
) -> list[dict]:
    from promptserve import Client
    from promptserve.models.bundle import Bundle
    from promptserve.models.clip.export.importers.templates import build_templates
    from promptserve.serving.config import AppConfig

    bundle = Bundle(bundle_dir)
    workdir = Path(tempfile.mkdtemp(prefix="promptserve-bench-"))
    port = args.port or _free_port()
    config = AppConfig.model_validate(
        {
            "bundle": str(bundle_dir),
            "topology": args.topology,
            "log_level": args.log_level,
            "engine": {
                "name": "onnxruntime",
                "threads": args.engine_threads,
                "allow_spinning": args.allow_spinning,
            },
            "http": {"host": "127.0.0.1", "port": port},
            "gateway": {"num_replicas": args.gateway_replicas, "num_cpus": args.gateway_cpus},
            "encoder": {
                "num_replicas": args.encoder_replicas,
                "num_cpus": args.encoder_cpus,
                "batcher": args.batcher,
                "max_batch_size": args.max_batch_size,
                "batch_wait_timeout_s": args.batch_wait_ms / 1000,
            },
            "prompts": {"store": str(workdir / "store")},
            "auth": {"api_keys": [], "api_keys_env": None},
        }
    )
    needed = args.gateway_replicas * args.gateway_cpus + args.encoder_replicas * args.encoder_cpus
    ray_cpus = args.ray_cpus or max(4, math.ceil(needed))
    report["config"]["app_config"] = config.model_dump(mode="json")
    report["config"]["ray_num_cpus"] = ray_cpus

    n_prompts = max(1, args.mixed_prompts)
    if n_prompts > len(CLASS_SETS):
        raise SystemExit(f"--mixed-prompts is at most {len(CLASS_SETS)}")
    prompt_ids = [f"bench-{k}" for k in range(n_prompts)]
    bodies = [
        [
            json.dumps(
                {
                    "images": [base64.b64encode(j).decode("ascii")],
                    "prompt_id": pid,
                    "top_k": args.top_k,
                }
            ).encode()
            for j in jpegs
        ]
        for pid in prompt_ids
    ]
    plan = [{"name": "single prompt", "concurrency": c, "prompts": 1} for c in args.concurrencies]
    if args.mixed_prompts > 1:
        plan.append(
            {
                "name": f"mixed {n_prompts} prompts",
                "concurrency": args.mixed_concurrency,
                "prompts": n_prompts,
            }
        )

    print(
        f"\n[served] starting Ray ({ray_cpus} logical CPUs) and Serve on port {port}: gateway "
        f"{args.gateway_replicas}x{args.gateway_cpus} CPU, encoder {args.encoder_replicas}x{args.encoder_cpus} CPU, "
        f"max_batch_size {args.max_batch_size}, batch wait {args.batch_wait_ms} ms ...",
        flush=True,
    )
    with served_app(config, workdir, num_cpus=ray_cpus, ready_timeout=args.ready_timeout) as url:
        with Client(url, timeout=120) as client:
            for k, pid in enumerate(prompt_ids):
                art = build_templates(
                    CLASS_SETS[k], backbone_id=bundle.backbone_id, templates=[TEMPLATE]
                )
                client.register_prompt(art.save(workdir / "artifacts" / pid), prompt_id=pid)
        print(f"[served] registered prompts {prompt_ids} (10 classes, 1 template each)", flush=True)
        return asyncio.run(_served_points(f"{url}/v1/classify", bodies, plan, args))


@contextlib.contextmanager
def served_app(
    config: Any,
    workdir: Path,
    *,
    num_cpus: int | None = None,
    ready_timeout: float = 600,
    metrics_port: int | None = None,
) -> Iterator[str]:
    """Ray on loopback and Serve running `config`; yields the app's URL. Always stops both,
    removes `workdir` and checks that no Ray process is left. `metrics_port` exports Ray's
    metrics there (Ray's default report interval, 10 s)."""
    from promptserve.serving import run

    try:
        if metrics_port is not None:
            import ray

            os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a benchmark on a closed VM
            ray.init(
                address="local",
                num_cpus=num_cpus or 4,
                include_dashboard=False,
                logging_level="WARNING",
                _metrics_export_port=metrics_port,
            )
        started = time.perf_counter()
        url = run.start(config, num_cpus=num_cpus)
        run.wait_ready(url, timeout_s=ready_timeout)
        print(f"[served] ready at {url} after {time.perf_counter() - started:.1f}s", flush=True)
        yield url
    finally:
        print("[served] shutting down Serve and Ray ...", flush=True)
        try:
            run.stop()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            _check_no_ray_left()


def fused_config(bundle_dir: Path, workdir: Path, args: argparse.Namespace, **overrides: Any):
    """The app config the prompt-mix and anomaly benchmarks serve: fused topology, no auth,
    ONNX Runtime with `args.engine_threads`, batches of up to `args.concurrency`."""
    from promptserve.serving.config import AppConfig

    base = {
        "bundle": str(bundle_dir),
        "topology": "fused",
        "log_level": "WARNING",
        "engine": {"name": "onnxruntime", "threads": args.engine_threads},
        "http": {"host": "127.0.0.1", "port": args.port or _free_port()},
        "encoder": {"max_batch_size": args.concurrency, "batch_wait_timeout_s": 0.01},
        "prompts": {"store": str(workdir / "store")},
        "auth": {"api_keys": [], "api_keys_env": None},
    }
    for key, value in overrides.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) else value
    return AppConfig.model_validate(base)


def _check_no_ray_left(timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        left = _descendants(_proc_table(), os.getpid()) - {os.getpid()}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if left:
        print(
            f"WARNING: processes started by this run are still alive: {sorted(left)}",
            file=sys.stderr,
        )


# -- report ---------------------------------------------------------------------------------------


def machine_info(engine_threads: int) -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    info.setdefault("cpu_model", platform.processor() or "unknown")
    info["logical_cpus"] = os.cpu_count()
    with contextlib.suppress(AttributeError):
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError):
        info["cgroup_cpu_max"] = Path("/sys/fs/cgroup/cpu.max").read_text().strip()
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = next(
            int(ln.split()[1])
            for ln in Path("/proc/meminfo").read_text().splitlines()
            if ln.startswith("MemTotal")
        )
        info["ram_gib"] = round(kib / (1 << 20), 1)
    for module in ("numpy", "onnxruntime", "ray", "httpx", "PIL", "promptserve"):
        try:
            info[f"{module}_version"] = __import__(module).__version__
        except Exception:  # noqa: BLE001 - a missing version is not worth failing the run
            info[f"{module}_version"] = None
    with contextlib.suppress(Exception):
        import onnxruntime

        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    info["engine_threads"] = engine_threads
    return info


def ratios(engine: list[dict], served: list[dict]) -> dict[str, float]:
    by_batch = {p["batch"]: p for p in engine}
    single = {p["concurrency"]: p for p in served if p["prompts"] == 1}
    out = {}
    for c, p in sorted(single.items()):
        if c in by_batch and by_batch[c]["images_per_s"]:
            out[f"served_c{c}_over_engine_b{c}"] = p["images_per_s"] / by_batch[c]["images_per_s"]
    for p in served:
        if (
            p["prompts"] > 1
            and p["concurrency"] in single
            and single[p["concurrency"]]["images_per_s"]
        ):
            out[f"mixed{p['prompts']}_c{p['concurrency']}_over_single_c{p['concurrency']}"] = (
                p["images_per_s"] / single[p["concurrency"]]["images_per_s"]
            )
    return out


def _f(x: float | None, fmt: str = ".1f") -> str:
    return "–" if x is None else format(x, fmt)


def markdown(report: dict) -> str:
    engine = {p["batch"]: p for p in report["engine"]}
    served = report["served"]
    single = {p["concurrency"]: p for p in served if p["prompts"] == 1}
    m, cfg = report["machine"], report["config"]
    lines = [
        f"# serve_classify — {report['model']['arch']} classification, {report['timestamp']}",
        "",
        f"**{report['weights']}**",
        "",
        f"Machine: {m.get('cpu_model')}, {m.get('logical_cpus')} logical CPUs (usable {m.get('usable_cpus')}), "
        f"{m.get('ram_gib')} GiB RAM; Python {m.get('python')}, onnxruntime {m.get('onnxruntime_version')}, "
        f"ray {m.get('ray_version')}, numpy {m.get('numpy_version')}.",
        "",
        f"Config: topology {cfg.get('topology', 'split')}{' + HAProxy ingress' if cfg.get('haproxy') else ''}, batcher {cfg.get('batcher', 'serve')}, engine threads {cfg['engine_threads']}, max_batch_size {cfg['max_batch_size']}, batch wait "
        f"{cfg['batch_wait_ms']} ms, gateway {cfg['gateway_replicas']}x{cfg['gateway_cpus']} CPU, encoder "
        f"{cfg['encoder_replicas']}x{cfg['encoder_cpus']} CPU, Ray logical CPUs {cfg.get('ray_num_cpus')}, "
        f"{cfg['seconds']} s per point after {cfg['warmup_seconds']} s warm-up{' (--quick)' if cfg['quick'] else ''}. "
        "Client: raw httpx (asyncio, closed loop) in the benchmark process, one 224x224 JPEG (q90) per request "
        "as JSON/base64.",
        "",
        "Engine latency is per `encode_image` call of the whole batch; served latency is per HTTP request "
        "(one image). Served images/s counts requests started in the window over the time until the last "
        "one finished.",
        "",
        "| N | engine img/s (batch N) | engine p50 / p99 ms | served img/s (concurrency N) | served p50 / p99 ms "
        "| mean vision batch | errors | served ÷ engine |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in sorted(set(engine) | set(single)):
        e, s = engine.get(n), single.get(n)
        ratio = s["images_per_s"] / e["images_per_s"] if e and s else None
        lines.append(
            f"| {n} | {_f(e and e['images_per_s'], '.2f')} | {_f(e and e['p50_ms'])} / {_f(e and e['p99_ms'])} "
            f"| {_f(s and s['images_per_s'], '.2f')} | {_f(s and s['p50_ms'])} / {_f(s and s['p99_ms'])} "
            f"| {_f(s and s['mean_batch_images'])} | {s['errors'] if s else '–'} | {_f(ratio, '.2f')} |"
        )
    for p in served:
        if p["prompts"] > 1:
            base = single.get(p["concurrency"])
            lines.append(
                f"| {p['concurrency']} ({p['prompts']} prompts mixed) | | | {p['images_per_s']:.2f} "
                f"| {_f(p['p50_ms'])} / {_f(p['p99_ms'])} | {_f(p['mean_batch_images'])} | {p['errors']} "
                f"| mixed ÷ single: {_f(base and p['images_per_s'] / base['images_per_s'], '.2f')} |"
            )
    lines += ["", "Key ratios:", ""]
    lines += [f"- `{k}` = **{v:.2f}**" for k, v in report["ratios"].items()]
    lines += [
        "",
        "CPU cores busy during each served point (from /proc; client = the benchmark process, which also "
        "hosts the Ray driver):",
        "",
        "| point | encoder | gateway | proxy | client | controller | other Ray | total |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in served:
        c = p["cpu_cores_busy"]
        lines.append(
            f"| {p['name']} c={p['concurrency']} | {c['encoder']:.2f} | {c['gateway']:.2f} | {c['proxy']:.2f} "
            f"| {c['client']:.2f} | {c['controller']:.2f} | {c['ray_other']:.2f} | {c['total']:.2f} |"
        )
    if report["engine"]:
        busy = ", ".join(f"batch {p['batch']}: {p['cpu_cores_busy']:.2f}" for p in report["engine"])
        lines += ["", f"Bare engine CPU cores busy (benchmark process): {busy}."]
    return "\n".join(lines) + "\n"


def bar_chart(report: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed; skipping the bar chart", flush=True)
        return False
    engine = {p["batch"]: p["images_per_s"] for p in report["engine"]}
    single = {p["concurrency"]: p["images_per_s"] for p in report["served"] if p["prompts"] == 1}
    mixed = {p["concurrency"]: p["images_per_s"] for p in report["served"] if p["prompts"] > 1}
    ns = sorted(set(engine) | set(single) | set(mixed))
    x = np.arange(len(ns))
    fig, ax = plt.subplots(figsize=(7, 4))
    for k, (label, data) in enumerate(
        [
            ("bare engine (batch N)", engine),
            ("served, 1 prompt (concurrency N)", single),
            ("served, mixed prompts", mixed),
        ]
    ):
        ax.bar(x + (k - 1) * 0.27, [data.get(n, 0) for n in ns], 0.27, label=label)
    ax.set_xticks(x, [str(n) for n in ns])
    ax.set_xlabel("N")
    ax.set_ylabel("images/s")
    cfg = report["config"]
    ax.set_title(
        f"{report['model']['arch']} (random weights) on {report['machine'].get('usable_cpus')} CPUs, "
        f"{cfg.get('topology', 'split')} topology, {cfg.get('batcher', 'serve')} batcher"
    )
    ax.legend(loc="lower right", framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def save_report(benchmark: str, report: dict, md: str, out_dir: Path) -> list[Path]:
    """`<benchmark>-<run start>.{json,md}` and `<benchmark>-latest.{json,md}` in `out_dir`;
    every benchmark here writes its results this way."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(report["timestamp"]).strftime("%Y%m%d-%H%M")
    written = []
    for name in (f"{benchmark}-{stamp}", f"{benchmark}-latest"):
        (out_dir / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
        (out_dir / f"{name}.md").write_text(md)
        written += [out_dir / f"{name}.json", out_dir / f"{name}.md"]
    return written


def write_outputs(report: dict, out_dir: Path) -> list[Path]:
    md = markdown(report)
    written = save_report("serve_classify", report, md, out_dir)
    stamp = datetime.fromisoformat(report["timestamp"]).strftime("%Y%m%d-%H%M")  # the run's start
    png = out_dir / f"serve_classify-{stamp}.png"
    if bar_chart(report, png):
        shutil.copyfile(png, out_dir / "serve_classify-latest.png")
        written += [png, out_dir / "serve_classify-latest.png"]
    print("\n" + md)
    return written


# -- main -----------------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="The backbone has seeded RANDOM weights: timings are real, predictions are not.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("model")
    g.add_argument(
        "--arch", default="ViT-B-32", help="open_clip architecture (seeded random weights)"
    )
    g.add_argument("--seed", type=int, default=0, help="weight-init seed")
    g.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="bundle cache (default: ~/.cache/promptserve/bench)",
    )
    g = p.add_argument_group("measurement")
    g.add_argument("--seconds", type=float, default=10.0, help="measured seconds per point")
    g.add_argument(
        "--warmup-seconds", type=float, default=3.0, help="warm-up seconds before each point"
    )
    g.add_argument("--quick", action="store_true", help="smoke run: 3 s per point, 1.5 s warm-up")
    g.add_argument(
        "--min-calls",
        type=int,
        default=3,
        help="bare engine: at least this many measured calls per point",
    )
    g.add_argument("--batches", type=_ints, default=[1, 8, 32], help="bare-engine batch sizes")
    g.add_argument(
        "--concurrencies",
        type=_ints,
        default=[1, 8, 32],
        help="served concurrency levels (1 prompt)",
    )
    g.add_argument(
        "--mixed-prompts",
        type=int,
        default=4,
        help="prompts cycled in the mixed point (<=1 skips it)",
    )
    g.add_argument(
        "--mixed-concurrency", type=int, default=32, help="concurrency of the mixed-prompts point"
    )
    g.add_argument(
        "--images", type=int, default=64, help="distinct pre-encoded JPEGs cycled by the client"
    )
    g.add_argument("--top-k", type=int, default=5, help="top_k sent with each request")
    g.add_argument(
        "--request-timeout", type=float, default=120.0, help="client timeout per request, seconds"
    )
    g.add_argument("--skip-engine", action="store_true", help="do not measure the bare engine")
    g.add_argument("--skip-serve", action="store_true", help="do not measure the served path")
    g = p.add_argument_group("server config")
    g.add_argument(
        "--engine-threads",
        type=int,
        default=2,
        help="ONNX Runtime intra-op threads (engine and encoder)",
    )
    g.add_argument(
        "--allow-spinning", action="store_true", help="let ONNX Runtime threads spin (both paths)"
    )
    g.add_argument(
        "--max-batch-size", type=int, default=32, help="encoder max images per vision call"
    )
    g.add_argument("--batch-wait-ms", type=float, default=10.0, help="encoder batch wait timeout")
    g.add_argument(
        "--haproxy",
        action="store_true",
        help="use Ray Serve's experimental HAProxy ingress (RAY_SERVE_ENABLE_HA_PROXY, "
        "RAY_SERVE_ENABLE_DIRECT_INGRESS) instead of its Python HTTP proxy",
    )
    g.add_argument(
        "--topology",
        choices=["split", "fused"],
        default="split",
        help="split: gateway and encoder deployments; fused: one deployment does both",
    )
    g.add_argument(
        "--batcher",
        choices=["continuous", "serve"],
        default="continuous",
        help="encoder batcher: promptserve's continuous batcher or Ray Serve's @serve.batch",
    )
    g.add_argument("--gateway-replicas", type=int, default=1)
    g.add_argument("--encoder-replicas", type=int, default=1)
    g.add_argument(
        "--gateway-cpus", type=float, default=0.5, help="Ray logical CPUs per gateway replica"
    )
    g.add_argument(
        "--encoder-cpus", type=float, default=1.0, help="Ray logical CPUs per encoder replica"
    )
    g.add_argument(
        "--ray-cpus",
        type=int,
        default=None,
        help="logical CPUs for ray.init (default: max(4, needed))",
    )
    g.add_argument("--port", type=int, default=0, help="Serve HTTP port (0: a free one)")
    g.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    g.add_argument("--ready-timeout", type=float, default=600.0, help="seconds to wait for /readyz")
    g = p.add_argument_group("output")
    g.add_argument(
        "--out-dir", type=Path, default=HERE / "results", help="where results are written"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup_seconds = 3.0, 1.5
    args.images = max(args.images, max(args.batches))
    return args


def _sigterm(*_: object) -> None:
    raise KeyboardInterrupt  # so the finally blocks shut Serve and Ray down


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Before anything imports ray: a loopback cluster needs no token auth, and no usage stats.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if args.haproxy:  # Ray Serve's experimental HAProxy ingress instead of its Python proxy
        os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
        os.environ["RAY_SERVE_ENABLE_DIRECT_INGRESS"] = "1"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    signal.signal(signal.SIGTERM, _sigterm)
    from promptserve.models.bundle import Bundle
    from promptserve.models.clip.export.seeded import default_cache_dir

    cache = args.cache_dir or default_cache_dir() / "bench"
    weights = WEIGHTS_NOTE.format(arch=args.arch, seed=args.seed)
    print(weights, flush=True)
    bundle_dir = ensure_bundle(args.arch, args.seed, cache)
    bundle = Bundle(bundle_dir)
    size = bundle.manifest.config.preprocess.size
    jpegs = [make_jpeg(1000 + i, size=size) for i in range(args.images)]
    report: dict[str, Any] = {
        "benchmark": "serve_classify",
        "timestamp": datetime.now().astimezone().isoformat(timespec="seconds"),
        "weights": weights,
        "model": {
            "arch": args.arch,
            "seed": args.seed,
            "backbone_id": bundle.backbone_id,
            "bundle": str(bundle_dir),
            "image_size": size,
            "embed_dim": bundle.manifest.config.embed_dim,
        },
        "machine": machine_info(args.engine_threads),
        "config": {
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "template": TEMPLATE,
            "classes_per_prompt": len(CLASS_SETS[0]),
            "jpeg_bytes_mean": float(np.mean([len(j) for j in jpegs])),
        },
        "method": {
            "engine": "encode_image on pre-normalised float32 pixels; warm-up, then repeated calls for "
            "--seconds (and at least --min-calls); images/s = images / elapsed; latency per call.",
            "served": "closed loop of N asyncio workers over one httpx.AsyncClient in the benchmark process; "
            "warm-up phase, then a measured phase in which requests start for --seconds and all finish; "
            "images/s = successful requests / (last finish - phase start); latency per request; mean vision "
            "batch from the x-promptserve-batch-images header (request-weighted).",
        },
        "engine": [],
        "served": [],
    }
    print(
        f"{len(jpegs)} JPEGs of {size}x{size}, mean {report['config']['jpeg_bytes_mean'] / 1024:.1f} KiB",
        flush=True,
    )
    try:
        if not args.skip_engine:
            report["engine"] = bench_engine(bundle_dir, jpegs, args)
        if not args.skip_serve:
            report["served"] = bench_served(bundle_dir, jpegs, args, report)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    report["ratios"] = ratios(report["engine"], report["served"])
    written = write_outputs(report, args.out_dir)
    print("wrote " + ", ".join(str(p) for p in written))
    left = subprocess.run(["pgrep", "-f", "raylet"], capture_output=True, text=True).stdout.split()
    if left:
        print(f"WARNING: raylet processes still running: {left}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
