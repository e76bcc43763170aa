"""Generation through the real stack: Ray Serve on loopback, the gateway's OpenAI-compatible
routes, the generator deployment with the transformers engine, the real `openai` client.

Every expected text comes from transformers run directly in this test (`model.generate` on
input embeddings we build here, and `output_attentions=True` for IDP's choice), never from
promptserve's engine. The tiny model has seeded random weights: the texts are gibberish, but
they are the same gibberish only if every position, mask and soft span is right.
"""

from __future__ import annotations

import asyncio
import base64
import time

import numpy as np
import pytest
from conftest import LLM_ADMIN

pytestmark = pytest.mark.timeout(600)
openai = pytest.importorskip("openai")
torch = pytest.importorskip("torch")

PROMPTS = ["The bank lends money to", "Rivers flow into the sea", "A cat sat on"]


@pytest.fixture(scope="module")
def hf(llm_server):
    """The backbone in transformers (eager attention, so `output_attentions` is exact)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from promptserve.models.bundle import Bundle
    from promptserve.models.llm.bundle import llm_config

    folder = llm_config(Bundle(llm_server["bundle"])).backbone_spec.path
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    return model, tok


@pytest.fixture(scope="module")
def oai(llm_server):
    return openai.OpenAI(base_url=llm_server["url"] + "/v1", api_key=LLM_ADMIN, max_retries=0)


def _soft(hf, n, seed):
    model, _ = hf
    std = float(model.get_input_embeddings().weight.std())
    return (
        np.random.default_rng(seed).normal(0, std, (n, model.config.hidden_size)).astype(np.float32)
    )


def _register(llm_server, manifest, tensors, prompt_id):
    import httpx
    from safetensors.numpy import save

    body = {
        "manifest": {"family": "llm", "backbone": llm_server["backbone"], **manifest},
        "prompt_id": prompt_id,
    }
    if tensors:
        body["tensors"] = base64.b64encode(save(tensors)).decode()
    headers = {"Authorization": f"Bearer {LLM_ADMIN}"}
    return httpx.post(llm_server["url"] + "/v1/prompts", json=body, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def prompts(llm_server, hf):
    """Two soft prompts (prefix), a DRO-style system soft prompt, an IDP pool, a hard prompt."""
    a, b, sys_ = _soft(hf, 4, 1), _soft(hf, 6, 2), _soft(hf, 3, 3)
    pool = [_soft(hf, 3, 10), _soft(hf, 5, 11), _soft(hf, 2, 12)]
    specs = {
        "soft-a": ({"method": "soft-prompt", "num_tokens": 4}, {"prompt_embeddings": a}),
        "soft-b": ({"method": "soft-prompt", "num_tokens": 6}, {"prompt_embeddings": b}),
        "dro": (
            {"method": "soft-prompt", "num_tokens": 3, "placement": "system"},
            {"prompt_embeddings": sys_},
        ),
        "pool": (
            {"method": "idp", "token_counts": [3, 5, 2], "layer": 1},
            {f"prompt.{i}": p for i, p in enumerate(pool)},
        ),
        "hard": ({"method": "hard-prompt", "text": "Answer briefly. ", "role": "prefix"}, {}),
    }
    for prompt_id, (manifest, tensors) in specs.items():
        r = _register(llm_server, manifest, tensors, prompt_id)
        assert r.status_code == 201, r.text
    return {"soft-a": a, "soft-b": b, "dro": sys_, "pool": pool}


def _reference(hf, ids, soft=None, at=0, max_new=12):
    """Greedy text from transformers' own generate, on embeddings built here."""
    model, tok = hf
    table = model.get_input_embeddings()
    with torch.no_grad():
        emb = table(torch.tensor([ids]))
        if soft is not None:
            s = torch.from_numpy(soft)[None]
            emb = torch.cat([emb[:, :at], s, emb[:, at:]], dim=1)
        out = model.generate(
            inputs_embeds=emb,
            attention_mask=torch.ones(emb.shape[:2], dtype=torch.long),
            max_new_tokens=max_new,
            do_sample=False,
            eos_token_id=model.generation_config.eos_token_id,
            pad_token_id=0,
        )
    return tok.decode(out[0], skip_special_tokens=True)


def _ids(hf, text):
    return hf[1](text)["input_ids"]


def test_base_model_completion_equals_transformers_generate(oai, hf):
    for text in PROMPTS:
        got = oai.completions.create(model="base", prompt=text, max_tokens=12, temperature=0)
        assert got.choices[0].text == _reference(hf, _ids(hf, text))
        assert got.usage.prompt_tokens == len(_ids(hf, text))
        assert got.choices[0].finish_reason in ("length", "stop")


def test_soft_prompt_goes_before_bos_as_peft_does(oai, hf, prompts):
    for name in ("soft-a", "soft-b"):
        got = oai.completions.create(model=name, prompt=PROMPTS[0], max_tokens=12, temperature=0)
        want = _reference(hf, _ids(hf, PROMPTS[0]), prompts[name], at=0)
        assert got.choices[0].text == want
        assert got.usage.prompt_tokens == len(_ids(hf, PROMPTS[0])) + len(prompts[name])
    base = oai.completions.create(model="base", prompt=PROMPTS[0], max_tokens=12, temperature=0)
    assert base.choices[0].text != got.choices[0].text  # the prompt changes the output


def test_system_soft_prompt_sits_in_the_system_turn(oai, hf, prompts):
    _, tok = hf
    messages = [{"role": "user", "content": "Name a river."}]
    got = oai.chat.completions.create(model="dro", messages=messages, max_tokens=10, temperature=0)
    marker = "@@SOFT@@"
    text = tok.apply_chat_template(
        [{"role": "system", "content": marker}, *messages],
        tokenize=False,
        add_generation_prompt=True,
    )
    before, after = text.split(marker)
    ids_before = tok(before, add_special_tokens=False)["input_ids"]
    ids = ids_before + tok(after, add_special_tokens=False)["input_ids"]
    want = _reference(hf, ids, prompts["dro"], at=len(ids_before), max_new=10)
    assert got.choices[0].message.content == want


def _idp_choice(hf, pool, ids, layer):
    """IDP's choice written from the paper: all prompts before the input, one eager forward
    with output_attentions, mean attention from the input's tokens to each prompt's tokens
    (mean over heads, queries and the prompt's keys)."""
    model, _ = hf
    with torch.no_grad():
        emb = model.get_input_embeddings()(torch.tensor([ids]))
        full = torch.cat([*(torch.from_numpy(p)[None] for p in pool), emb], dim=1)
        att = model(inputs_embeds=full, output_attentions=True).attentions[layer][0]
    start, scores = 0, []
    first_input = sum(len(p) for p in pool)
    for p in pool:
        block = att[:, first_input:, start : start + len(p)]
        scores.append(float(block.mean()))
        start += len(p)
    return int(np.argmax(scores)), scores


def test_idp_pool_choice_and_generation_match_the_reference(oai, hf, prompts):
    seen = set()
    texts = [*PROMPTS, "Banks and rivers", "Money money money", "The sea"]
    for text in texts:
        ids = _ids(hf, text)
        got = oai.completions.create(model="pool", prompt=text, max_tokens=8, temperature=0)
        sel = got.selection
        want_index, want_scores = _idp_choice(hf, prompts["pool"], ids, layer=1)
        assert sel["index"] == want_index
        np.testing.assert_allclose(sel["scores"], want_scores, rtol=1e-4, atol=1e-6)
        chosen = prompts["pool"][want_index]
        assert got.choices[0].text == _reference(hf, ids, chosen, at=0, max_new=8)
        seen.add(want_index)
    assert seen, "no selection came back"


def test_mixed_batch_equals_each_request_alone(llm_server, prompts):
    """Concurrent requests for different prompts (two soft prompts, the pool, the base, a hard
    prompt) share the engine's steps; each answer equals the same request sent alone."""
    client = openai.AsyncOpenAI(
        base_url=llm_server["url"] + "/v1", api_key=LLM_ADMIN, max_retries=0
    )
    jobs = [(m, t) for m in ("soft-a", "soft-b", "pool", "base", "hard") for t in PROMPTS]

    async def one(model, text):
        r = await client.completions.create(model=model, prompt=text, max_tokens=10, temperature=0)
        return r.choices[0].text

    async def main():
        alone = [await one(m, t) for m, t in jobs]
        together = await asyncio.gather(*(one(m, t) for m, t in jobs))
        return alone, together

    alone, together = asyncio.run(main())
    assert together == alone


def test_chat_stream_equals_the_whole_answer(oai, prompts):
    messages = [{"role": "user", "content": "Say something about banks."}]
    whole = oai.chat.completions.create(
        model="soft-a", messages=messages, max_tokens=16, temperature=0
    )
    chunks = list(
        oai.chat.completions.create(
            model="soft-a",
            messages=messages,
            max_tokens=16,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    # role, content, usage at least; tokens made while the reader was busy come merged, so the
    # count of content chunks depends on timing (test_client_that_disconnects_... shows the
    # answer streams before it is finished)
    assert len(chunks) >= 3


def test_stop_sequence_cuts_the_text(oai):
    full = oai.completions.create(model="base", prompt=PROMPTS[1], max_tokens=16, temperature=0)
    text = full.choices[0].text
    stop = text[5:8]
    assert stop.strip(), text
    cut = oai.completions.create(
        model="base", prompt=PROMPTS[1], max_tokens=16, temperature=0, stop=[stop]
    )
    assert cut.choices[0].text == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_seeded_sampling_repeats(oai):
    def sample(seed):
        r = oai.completions.create(
            model="base", prompt=PROMPTS[2], max_tokens=12, temperature=0.9, top_p=0.9, seed=seed
        )
        return r.choices[0].text

    assert sample(7) == sample(7)
    assert len({sample(s) for s in (1, 2, 3)}) > 1


def test_hard_prompt_is_prefixed_text(oai, hf):
    got = oai.completions.create(model="hard", prompt=PROMPTS[0], max_tokens=10, temperature=0)
    want = _reference(hf, _ids(hf, "Answer briefly. " + PROMPTS[0]), max_new=10)
    assert got.choices[0].text == want


def test_models_lists_generation_prompts(oai, prompts):
    ids = {m.id for m in oai.models.list()}
    assert {"base", "soft-a", "soft-b", "dro", "pool", "hard"} <= ids
    assert "reps" not in ids  # a retrieval prompt is not a generation model


def test_bad_requests_are_4xx_in_openai_shape(oai, llm_server, hf):
    with pytest.raises(openai.NotFoundError) as err:
        oai.completions.create(model="no-such-prompt", prompt="hi", max_tokens=2)
    assert err.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        oai.completions.create(model="base", prompt="hi", max_tokens=100_000)
    with pytest.raises(openai.BadRequestError, match="context"):
        oai.completions.create(model="base", prompt="€" * 1000, max_tokens=4)
    with pytest.raises(openai.BadRequestError, match="n"):
        oai.completions.create(model="base", prompt="hi", max_tokens=2, n=2)
    with pytest.raises(openai.BadRequestError, match="not a generation prompt"):
        oai.completions.create(model="reps", prompt="hi", max_tokens=2)
    # a soft prompt of another model's width: 409 at registration
    wide = np.zeros((4, hf[0].config.hidden_size * 2), np.float32)
    r = _register(
        llm_server, {"method": "soft-prompt", "num_tokens": 4}, {"prompt_embeddings": wide}, "w"
    )
    assert r.status_code == 409, r.text
    assert "hidden size" in r.json()["error"]["message"]
    # the server still serves
    ok = oai.completions.create(model="base", prompt="hi", max_tokens=2, temperature=0)
    assert ok.choices[0].text is not None


def test_client_that_disconnects_frees_its_row(llm_server):
    """Read two chunks of a long stream, hang up: the generator drops the row at once."""
    import httpx
    from ray import serve

    handle = serve.get_deployment_handle("generator", app_name="llm")
    body = {
        "model": "base",
        "prompt": PROMPTS[0],
        "max_tokens": 500,
        "stream": True,
        "temperature": 0,
    }
    headers = {"Authorization": f"Bearer {LLM_ADMIN}"}
    with (
        httpx.Client(base_url=llm_server["url"], headers=headers, timeout=60) as http,
        http.stream("POST", "/v1/completions", json=body) as r,
    ):
        assert r.status_code == 200
        lines = r.iter_lines()
        got = [next(lines) for _ in range(4)]
        assert any(line.startswith("data: {") for line in got)
        assert handle.stats.remote().result()["running"] == 1
    deadline = time.monotonic() + 10
    while handle.stats.remote().result()["running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert handle.stats.remote().result()["running"] == 0


def test_generation_row_of_the_dashboard_is_exported(oai, ray_cluster, prompts):
    """The dashboard's Generation row (tokens/s by model, TTFT, inter-token latency, pool
    selections) queries metrics this app exports once it generated, streamed and selected."""
    from test_deploy_serving import _scrape_until_exported, _used_metric_names

    oai.completions.create(model="pool", prompt=PROMPTS[0], max_tokens=4, temperature=0)
    list(oai.completions.create(model="base", prompt=PROMPTS[0], max_tokens=4, stream=True))
    wanted = _used_metric_names(row="Generation")
    assert "ray_promptserve_pool_selections_total" in wanted
    _scrape_until_exported(ray_cluster["metrics_port"], wanted)


def test_sdk_generate_and_chat_stream_like_the_openai_client(llm_server, oai, prompts):
    """promptserve's own client (sync and async, streamed and whole) says what the openai
    client says, selection included."""
    from promptserve import AsyncClient, Client

    want = oai.completions.create(model="pool", prompt=PROMPTS[1], max_tokens=8, temperature=0)
    messages = [{"role": "user", "content": "Tell me about rivers."}]
    chat = oai.chat.completions.create(
        model="soft-b", messages=messages, max_tokens=8, temperature=0
    )
    with Client(llm_server["url"], api_key=LLM_ADMIN) as client:
        got = client.generate(PROMPTS[1], model="pool", max_tokens=8, temperature=0)
        assert got.choices[0].text == want.choices[0].text
        assert got.selection.index == want.selection["index"]
        with client.generate(
            PROMPTS[1], model="pool", max_tokens=8, temperature=0, stream=True
        ) as stream:
            chunks = list(stream)
        assert "".join(c.choices[0].text for c in chunks if c.choices) == want.choices[0].text
        assert chunks[0].selection.index == want.selection["index"]
        streamed = client.chat(messages, model="soft-b", max_tokens=8, temperature=0, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        assert text == chat.choices[0].message.content

    async def main():
        async with AsyncClient(llm_server["url"], api_key=LLM_ADMIN) as client:
            whole = await client.chat(messages, model="soft-b", max_tokens=8, temperature=0)
            parts = []
            stream = await client.generate(
                PROMPTS[1], model="pool", max_tokens=8, temperature=0, stream=True
            )
            async with stream:
                async for c in stream:
                    parts += [x.text for x in c.choices]
            return whole.choices[0].message.content, "".join(parts)

    whole, text = asyncio.run(main())
    assert whole == chat.choices[0].message.content
    assert text == want.choices[0].text
