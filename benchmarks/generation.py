#!/usr/bin/env python
"""Benchmark: dynamic prompting for generation (issue 16), side by side in one run.

1. Soft prompts batched across artifacts (models/llm/generate/hf_engine.py, in this process):
   one stream of requests, each with a soft prompt drawn round-robin from 1, 10 or 100
   distinct prompts (plus "none": the bare backbone through the same engine), and the
   bare engine: transformers' `model.generate` on the same requests in fixed batches of the
   engine's row count, from the same input embeddings (soft prompt included), run on the main
   thread and in a worker thread as the engine runs its forwards. Tokens/s and
   tokens per CPU-second; ratios: k prompts ÷ 1 prompt (goal >= 0.9) and engine ÷ bare
   `generate`.
2. IDP pools: the same stream with an m-prompt pool per request (selection pass + generation
   with the chosen prompt) ÷ one soft prompt, m = 4 and 16.
3. Served (`--served`): the same mixes through Ray Serve on loopback and the `openai` client
   (closed loop, `--concurrency` requests in flight): served ÷ in-process engine.
4. CLIP dynamic prompting: benchmarks/dynamic_clip.py's numbers, run in the same command
   when it is present (`--skip-clip` to leave it out).

Every request generates exactly `--max-tokens` tokens (greedy, no stop token), so all
configurations do the same work. Rounds are interleaved (the order of configurations rotates
each round) and medians reported; CPU seconds are this process's (torch's threads included),
the served part adds Ray's processes.

The default model is the tiny seeded Llama (models/llm/export/seeded.py): RANDOM WEIGHTS, 64
wide, 2 layers. Its forward costs almost nothing, so per-step overheads (Python scheduling,
embedding writes) weigh far more than with a real model (`--model-dir`).

Results: benchmarks/results/generation-<YYYYmmdd-HHMM>.{json,md} and generation-latest.*.

Example:
    python benchmarks/generation.py                 # parts 1, 2 and 4
    python benchmarks/generation.py --served        # also part 3
    python benchmarks/generation.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_classify import machine_info, save_report

RESULTS = Path(__file__).resolve().parent / "results"
TEXTS = [
    "The bank lends money to",
    "Rivers flow into the sea and",
    "A cat sat on the mat while",
    "Governments collect taxes and",
    "The glacier moved slowly across",
    "Volcanoes erupt when",
    "Students read books about",
    "The market opened with",
]


def load(model_dir: str | None) -> tuple[Any, Any, str]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from promptserve.models.llm.export.seeded import demo_llm_dir

    folder = model_dir or str(demo_llm_dir())
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(folder), folder


def soft_prompts(model: Any, count: int, tokens: int, seed: int = 0) -> list[np.ndarray]:
    std = float(model.get_input_embeddings().weight.detach().std())
    rng = np.random.default_rng(seed)
    width = model.config.hidden_size
    return [rng.normal(0, std, (tokens, width)).astype(np.float32) for _ in range(count)]


def requests(tok: Any, n: int) -> list[tuple[int, ...]]:
    return [tuple(tok(TEXTS[i % len(TEXTS)])["input_ids"]) for i in range(n)]


def run_engine(engine: Any, jobs: list[Any], max_tokens: int) -> dict[str, float]:
    """All `jobs` (layout, pool) submitted at once; the engine batches them by its rows."""
    from promptserve.models.llm.generate.params import EngineRequest, Sampling

    async def one(layout: Any, pool: Any) -> int:
        n = 0
        request = EngineRequest(layout, Sampling(max_tokens=max_tokens, temperature=0.0), pool)
        async for out in engine.stream(request):
            n += len(out.token_ids)
        return n

    async def main() -> int:
        return sum(await asyncio.gather(*(one(layout, pool) for layout, pool in jobs)))

    wall, cpu = time.perf_counter(), time.process_time()
    tokens = asyncio.run(main())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"tokens": tokens, "wall_s": wall, "cpu_s": cpu}


def run_bare(model: Any, embeds: list[Any], rows: int, max_tokens: int) -> dict[str, float]:
    """transformers' generate on the same inputs, fixed batches of `rows`, left-padded."""
    import torch

    tokens = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(embeds), rows):
        chunk = embeds[start : start + rows]
        width = max(e.shape[0] for e in chunk)
        batch = torch.zeros((len(chunk), width, chunk[0].shape[1]))
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, e in enumerate(chunk):
            batch[i, width - e.shape[0] :] = e
            mask[i, width - e.shape[0] :] = 1
        with torch.inference_mode():
            out = model.generate(
                inputs_embeds=batch,
                attention_mask=mask,
                max_new_tokens=max_tokens,
                min_new_tokens=max_tokens,
                do_sample=False,
                pad_token_id=0,
            )
        tokens += out.shape[0] * out.shape[1]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"tokens": tokens, "wall_s": wall, "cpu_s": cpu}


def summarise(runs: list[dict[str, float]]) -> dict[str, float]:
    return {
        "tokens": runs[0]["tokens"],
        "tokens_per_s": statistics.median(r["tokens"] / r["wall_s"] for r in runs),
        "tokens_per_cpu_s": statistics.median(r["tokens"] / max(r["cpu_s"], 1e-9) for r in runs),
        "wall_s": statistics.median(r["wall_s"] for r in runs),
        "rounds": len(runs),
    }


def engine_part(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from promptserve.models.llm.generate.hf_engine import HfEngine
    from promptserve.models.llm.generate.layout import PromptLayout, SoftSpan
    from promptserve.models.llm.generate.params import PoolChoice

    torch.set_num_threads(args.threads)
    model, tok, folder = load(args.model_dir)
    engine = HfEngine(model, max_batch_rows=args.rows, max_prefill_tokens=1 << 16)
    ids = requests(tok, args.requests)
    prompts = soft_prompts(model, max(args.mixes), args.soft_tokens)
    table = model.get_input_embeddings()
    configs: dict[str, Any] = {}
    for k in args.mixes:
        configs[f"soft x{k}"] = [
            (PromptLayout(x, (SoftSpan(0, prompts[i % k]),)), None) for i, x in enumerate(ids)
        ]
    configs["none"] = [(PromptLayout(x), None) for x in ids]
    for m in args.pools:
        pool = PoolChoice(tuple(soft_prompts(model, m, args.soft_tokens, seed=100 + m)), 0, 1)
        configs[f"idp pool m={m}"] = [(PromptLayout(x), pool) for x in ids]
    with torch.no_grad():
        bare_inputs = [
            torch.cat([torch.from_numpy(prompts[0]), table(torch.tensor(list(x)))], dim=0)
            for x in ids
        ]
    names = [*configs, "bare generate (1 soft prompt)", "bare generate, worker thread"]
    # the engine runs its forwards in a worker thread (the event loop stays free); torch in a
    # non-main thread is measurably slower on small CPUs, so the bare engine is timed both ways
    worker = ThreadPoolExecutor(1)
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    run_engine(engine, configs["soft x1"][: args.rows], args.max_tokens)  # warm-up
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            if name.startswith("bare generate, worker"):
                job = worker.submit(run_bare, model, bare_inputs, args.rows, args.max_tokens)
                runs[name].append(job.result())
            elif name.startswith("bare"):
                runs[name].append(run_bare(model, bare_inputs, args.rows, args.max_tokens))
            else:
                runs[name].append(run_engine(engine, configs[name], args.max_tokens))
        print(f"  round {r + 1}/{args.rounds} done", flush=True)
    table_out = {n: summarise(v) for n, v in runs.items()}
    one = table_out["soft x1"]["tokens_per_s"]
    ratios = {
        f"soft x{k} ÷ soft x1": table_out[f"soft x{k}"]["tokens_per_s"] / one for k in args.mixes
    }
    ratios["soft x1 ÷ bare generate"] = (
        one / table_out["bare generate (1 soft prompt)"]["tokens_per_s"]
    )
    ratios["soft x1 ÷ bare generate in a worker thread"] = (
        one / table_out["bare generate, worker thread"]["tokens_per_s"]
    )
    ratios["none ÷ soft x1"] = table_out["none"]["tokens_per_s"] / one
    for m in args.pools:
        ratios[f"idp m={m} ÷ soft x1"] = table_out[f"idp pool m={m}"]["tokens_per_s"] / one
    return {"model": folder, "results": table_out, "ratios": ratios}


def served_part(args: argparse.Namespace) -> dict[str, Any]:
    """The mixes through Ray Serve and the openai client."""
    import base64
    import os
    import tempfile

    import httpx
    import openai
    import ray
    from ray import serve
    from safetensors.numpy import save

    from promptserve.models.bundle import Bundle
    from promptserve.models.llm.export.onnx import export_bundle
    from promptserve.models.llm.export.seeded import demo_llm_dir
    from promptserve.serving.app import build_app
    from promptserve.serving.config import AppConfig

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    work = Path(tempfile.mkdtemp(prefix="gen-bench-"))
    folder = args.model_dir or str(demo_llm_dir())
    bundle = export_bundle(f"local-dir:{folder}", work / "bundle", progress=False)
    backbone = Bundle(bundle).backbone_id
    config = AppConfig.model_validate(
        {
            "bundle": str(bundle),
            "prompts": {"store": str(work / "store")},
            "index": {"path": str(work / "indexes")},
            "auth": {"enabled": False},
            "generator": {"max_batch_rows": args.rows, "num_cpus": 1, "max_tokens": 4096},
            "encoder": {"num_cpus": 0.1},
            "gateway": {"num_cpus": 0.5},
            "indexer": {"num_cpus": 0.1},
        }
    )
    ray.init(num_cpus=4, include_dashboard=False, _node_ip_address="127.0.0.1")
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(build_app(config), name="gen", route_prefix="/gen", blocking=False)
    url = f"http://127.0.0.1:{args.port}/gen"
    for _ in range(600):
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    model, _, _ = load(args.model_dir)
    prompts = soft_prompts(model, max(args.mixes), args.soft_tokens)
    for i, p in enumerate(prompts):
        body = {
            "manifest": {
                "family": "llm",
                "backbone": backbone,
                "method": "soft-prompt",
                "num_tokens": args.soft_tokens,
            },
            "tensors": base64.b64encode(save({"prompt_embeddings": p})).decode(),
            "prompt_id": f"soft-{i}",
        }
        httpx.post(url + "/v1/prompts", json=body, timeout=60).raise_for_status()

    async def mix(k: int) -> dict[str, float]:
        queue = list(range(args.requests))
        total = 0
        # a client per run: each asyncio.run is a new event loop
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="none", max_retries=0)

        async def worker() -> None:
            nonlocal total
            while queue:
                i = queue.pop()
                r = await client.completions.create(
                    model=f"soft-{i % k}",
                    prompt=TEXTS[i % len(TEXTS)],
                    max_tokens=args.max_tokens,
                    temperature=0,
                    extra_body={"ignore_eos": True},
                )
                total += r.usage.completion_tokens

        wall = time.perf_counter()
        async with client:
            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        return {"tokens": total, "wall_s": time.perf_counter() - wall, "cpu_s": float("nan")}

    runs: dict[str, list[dict[str, float]]] = {f"served soft x{k}": [] for k in args.mixes}
    try:
        asyncio.run(mix(1))  # warm-up
        for r in range(args.rounds):
            order = args.mixes[r % len(args.mixes) :] + args.mixes[: r % len(args.mixes)]
            for k in order:
                runs[f"served soft x{k}"].append(asyncio.run(mix(k)))
    finally:
        serve.shutdown()
        ray.shutdown()
    out = {
        n: {
            "tokens_per_s": statistics.median(x["tokens"] / x["wall_s"] for x in v),
            "tokens": v[0]["tokens"],
        }
        for n, v in runs.items()
    }
    return {"results": out}


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Generation: dynamic prompting (issue 16)",
        "",
        f"{report['timestamp']} · {report['machine'].get('cpu_model')} · "
        f"{report['machine'].get('usable_cpus')} usable CPUs · torch threads {report['args']['threads']}",
        "",
        f"Model: `{report['engine']['model']}` (the tiny seeded Llama unless --model-dir: "
        "RANDOM WEIGHTS). Each request generates exactly "
        f"{report['args']['max_tokens']} tokens; {report['args']['requests']} requests per "
        f"configuration; engine rows {report['args']['rows']}; soft prompts of "
        f"{report['args']['soft_tokens']} tokens. Medians of {report['args']['rounds']} "
        "interleaved rounds.",
        "",
        "| configuration | tokens/s | tokens per CPU-second | wall s |",
        "|---|---:|---:|---:|",
    ]
    for name, r in report["engine"]["results"].items():
        lines.append(
            f"| {name} | {r['tokens_per_s']:.0f} | {r['tokens_per_cpu_s']:.0f} | {r['wall_s']:.2f} |"
        )
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in report["engine"]["ratios"].items()]
    served = report.get("served")
    if served:
        lines += ["", "Served (Ray Serve on loopback, openai client):", ""]
        lines += ["| configuration | tokens/s | served ÷ engine |", "|---|---:|---:|"]
        for name, r in served["results"].items():
            base = report["engine"]["results"].get(name.replace("served ", ""), {})
            ratio = r["tokens_per_s"] / base["tokens_per_s"] if base else float("nan")
            lines.append(f"| {name} | {r['tokens_per_s']:.0f} | {ratio:.3f} |")
    clip = report.get("clip")
    if clip:
        lines += ["", "CLIP dynamic prompting (benchmarks/dynamic_clip.py):", "", clip]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model-dir", default=None)
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--rows", type=int, default=16)
    p.add_argument("--soft-tokens", type=int, default=8)
    p.add_argument("--mixes", type=int, nargs="+", default=[1, 10, 100])
    p.add_argument("--pools", type=int, nargs="+", default=[4, 16])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--served", action="store_true")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--skip-clip", action="store_true")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.requests, args.rounds, args.max_tokens = 16, 2, 8
    report: dict[str, Any] = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "args": vars(args),
        "machine": machine_info(args.threads),
    }
    print("part 1-2: engine", flush=True)
    report["engine"] = engine_part(args)
    if args.served:
        print("part 3: served", flush=True)
        report["served"] = served_part(args)
    clip = Path(__file__).resolve().parent / "dynamic_clip.py"
    if clip.exists() and not args.skip_clip:
        print("part 4: CLIP dynamic prompting", flush=True)
        cmd = [sys.executable, str(clip), *(["--quick"] if args.quick else [])]
        subprocess.run(cmd, check=False)
        latest = RESULTS / "dynamic_clip-latest.md"
        if latest.exists():
            report["clip"] = latest.read_text()
    md = markdown(report)
    for path in save_report("generation", report, md, RESULTS):
        print("wrote", path)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
