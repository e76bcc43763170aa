"""The transformers generation engine without Ray: layouts, the step scheduler (rows joining
and leaving a running batch), IDP selection with a head subset, and streamed text.

Expected tokens come from transformers' own `generate` on embeddings built here; expected
selections from `output_attentions=True` on an eager-attention copy of the model.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from promptserve.models.llm.generate.layout import PromptLayout, SoftSpan, embed  # noqa: E402
from promptserve.models.llm.generate.params import (  # noqa: E402
    EngineRequest,
    PoolChoice,
    Sampling,
)
from promptserve.models.llm.generate.text import IncrementalText  # noqa: E402


@pytest.fixture(scope="module")
def model_and_tok(tiny_llm_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llm_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_llm_dir)


@pytest.fixture
def engine(model_and_tok):
    from promptserve.models.llm.generate.hf_engine import HfEngine

    return HfEngine(model_and_tok[0], max_batch_rows=4)


def _soft(model, n, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.02, (n, model.config.hidden_size)).astype(np.float32)


def _want(model, ids, soft=None, at=0, n=10):
    with torch.no_grad():
        emb = model.get_input_embeddings()(torch.tensor([ids]))
        if soft is not None:
            emb = torch.cat([emb[:, :at], torch.from_numpy(soft)[None], emb[:, at:]], dim=1)
        out = model.generate(
            inputs_embeds=emb,
            attention_mask=torch.ones(emb.shape[:2], dtype=torch.long),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=0,
        )
    return out[0].tolist()


async def _run(engine, layout, n=10, pool=None):
    tokens, selection = [], None
    request = EngineRequest(layout, Sampling(max_tokens=n, temperature=0.0), pool)
    async for out in engine.stream(request):
        tokens += out.token_ids
        selection = selection or out.selection
    return tokens, selection


def test_layout_places_spans_and_embeds_them(model_and_tok):
    model, _ = model_and_tok
    a, b = _soft(model, 2, 0), _soft(model, 3, 1)
    layout = PromptLayout((5, 6, 7), (SoftSpan(0, a), SoftSpan(2, b)))
    assert len(layout) == 8
    assert layout.tokens(-1) == [-1, -1, 5, 6, -1, -1, -1, 7]
    out = embed([layout, PromptLayout((9,))], model.get_input_embeddings())
    table = model.get_input_embeddings().weight.detach()
    assert out.shape == (2, 8, model.config.hidden_size)
    np.testing.assert_array_equal(out[0, :2].numpy(), a)
    np.testing.assert_array_equal(out[0, 2].numpy(), table[5].numpy())
    np.testing.assert_array_equal(out[0, 4:7].numpy(), b)
    assert not out[1, :7].any()  # left padding is zeros
    np.testing.assert_array_equal(out[1, 7].numpy(), table[9].numpy())
    with pytest.raises(ValueError):
        PromptLayout((1, 2), (SoftSpan(3, a),))


def test_rows_joining_a_running_batch_match_transformers(engine, model_and_tok):
    """Requests of different lengths, soft prompts and arrival times share steps; each
    request's tokens equal `generate` run on it alone."""
    model, tok = model_and_tok
    texts = ["The bank", "Rivers flow into the sea and on", "A cat sat on the mat by"]
    softs = [None, _soft(model, 3, 5), _soft(model, 6, 6)]
    layouts = [
        PromptLayout(tuple(tok(t)["input_ids"]), () if s is None else (SoftSpan(0, s),))
        for t, s in zip(texts, softs, strict=True)
    ]

    async def main():
        first = asyncio.ensure_future(_run(engine, layouts[0], n=14))
        await asyncio.sleep(0.02)  # the others arrive while the first decodes
        rest = [asyncio.ensure_future(_run(engine, x, n=8)) for x in layouts[1:]]
        return [await first] + [await r for r in rest]

    got = asyncio.run(main())
    for (tokens, _), text, soft, n in zip(got, texts, softs, (14, 8, 8), strict=True):
        assert tokens == _want(model, tok(text)["input_ids"], soft, n=n)
    assert engine.active == 0


def test_a_cancelled_row_leaves_and_the_rest_continue(engine, model_and_tok):
    model, tok = model_and_tok
    ids = tuple(tok("The sea is")["input_ids"])

    async def main():
        long = engine.stream(
            EngineRequest(PromptLayout(ids), Sampling(max_tokens=200, temperature=0.0))
        )
        await long.__anext__()
        other = asyncio.ensure_future(_run(engine, PromptLayout(ids), n=6))
        await long.__anext__()
        await long.aclose()  # the client went away
        return await other

    tokens, _ = asyncio.run(main())
    assert tokens == _want(model, list(ids), n=6)
    assert engine.active == 0


def _reference_choice(model_dir, pool, ids, layer, heads):
    from transformers import AutoModelForCausalLM

    eager = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    with torch.no_grad():
        emb = eager.get_input_embeddings()(torch.tensor([ids]))
        full = torch.cat([*(torch.from_numpy(p)[None] for p in pool), emb], dim=1)
        att = eager(inputs_embeds=full, output_attentions=True).attentions[layer][0]
    first = sum(len(p) for p in pool)
    scores, start = [], 0
    for p in pool:
        scores.append(float(att[list(heads), first:, start : start + len(p)].mean()))
        start += len(p)
    return int(np.argmax(scores)), scores


def test_pool_selection_with_a_head_subset_matches_output_attentions(
    engine, model_and_tok, tiny_llm_dir
):
    model, tok = model_and_tok
    pool = tuple(_soft(model, n, 20 + n) * 40 for n in (2, 4, 3))
    heads = (1, 3)
    for text in ("The bank lends money", "Rivers"):
        ids = tok(text)["input_ids"]
        choice = PoolChoice(pool, 0, layer=0, heads=heads)
        tokens, selection = asyncio.run(_run(engine, PromptLayout(tuple(ids)), pool=choice))
        index, scores = _reference_choice(tiny_llm_dir, pool, ids, 0, heads)
        assert selection.index == index
        np.testing.assert_allclose(selection.scores, scores, rtol=1e-4, atol=1e-7)
        assert tokens == _want(model, ids, pool[index], n=10)


class _Chars:
    """A tokenizer whose ids are characters' code points (bytes for U+FFFD tests)."""

    def decode(self, ids, skip_special_tokens=True):
        return bytes(ids).decode("utf-8", errors="replace")


def test_text_holds_half_characters_and_cuts_at_stop_sequences():
    text = IncrementalText(_Chars())
    euro = list("€".encode())
    assert text.add(euro[:2]) == ""  # half of a character is held back
    assert text.add(euro[2:]) == "€"
    stops = IncrementalText(_Chars(), ["STOP"])
    got = [stops.add(list(c.encode())) for c in ("ab", "S", "T", "x", "ST", "OP", "more")]
    assert got == ["ab", "", "", "STx", "", "", ""]
    assert stops.stopped
    flushed = IncrementalText(_Chars(), ["STOP"])
    assert flushed.add(list(b"abST")) == "ab"
    assert flushed.add([], final=True) == "ST"


def test_a_full_waiting_queue_refuses_instead_of_queueing(model_and_tok):
    """Beyond `max_waiting` queued requests the engine raises EngineFull (the generator turns
    it into a 503 with Retry-After) and the queued ones still complete."""
    from promptserve.models.llm.generate.engine import EngineFull
    from promptserve.models.llm.generate.hf_engine import HfEngine

    model, tok = model_and_tok
    engine = HfEngine(model, max_batch_rows=1, max_waiting=1)
    layout = PromptLayout(tuple(tok("The sea")["input_ids"]))

    async def main():
        request = EngineRequest(layout, Sampling(max_tokens=3, temperature=0.0))
        first, second = engine.stream(request), engine.stream(request)
        queued = asyncio.ensure_future(first.__anext__())
        refused = asyncio.ensure_future(second.__anext__())
        await asyncio.sleep(0)  # both ran up to the queue check; the engine loop has not
        with pytest.raises(EngineFull):
            await refused
        out = [await queued] + [o async for o in first]
        return sum(len(o.token_ids) for o in out)

    assert asyncio.run(main()) == 3
