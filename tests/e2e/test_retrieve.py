"""PromptReps retrieval served end to end on the tiny seeded LLM: representations, indexes
(the embedded engine, for real), search in every mode, the BEIR evaluation CLI, and the
refusals the issue lists.

Expected values never come from the route under test: served representations are checked
against the bare runtime (the same bundle run in-process without Serve), searches against an
exact numpy search over those representations fused by the reference written from the
official hybrid.py (tests/parity/hybrid_reference.py), and the evaluation against qrels of a
set built so that each query shares its words with exactly one passage.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import LLM_ADMIN as ADMIN

from promptserve import (
    Client,
    IndexMismatch,
    IndexNotFound,
    InvalidInput,
)

BEIR = Path(__file__).resolve().parents[2] / "sdk" / "data" / "beir-demo"


def _corpus() -> list[dict]:
    return [json.loads(line) for line in (BEIR / "corpus.jsonl").read_text().splitlines()]


def _queries() -> dict[str, str]:
    rows = [json.loads(line) for line in (BEIR / "queries.jsonl").read_text().splitlines()]
    return {q["_id"]: q["text"] for q in rows}


@pytest.fixture(scope="module")
def bare(tiny_llm_bundle, llm_server):
    """The same bundle and prompt without Serve: the onnxruntime engine in this process."""
    from promptserve.models.bundle import Bundle
    from promptserve.models.llm.bundle import llm_config
    from promptserve.models.llm.promptreps import represent
    from promptserve.models.llm.runtime import LlmGraphs
    from promptserve.models.llm.tokenizer import LlmTokenizer
    from promptserve.serving.engines.base import EngineOptions, create_engine

    bundle = Bundle(tiny_llm_bundle)
    graphs = LlmGraphs(create_engine("onnxruntime", bundle, EngineOptions()))
    tokenizer = LlmTokenizer.from_file(bundle.dir / llm_config(bundle).tokenizer_file)
    manifest = llm_server["artifact"].manifest

    def run(texts, side):
        return represent(graphs, tokenizer, manifest, list(texts), side)

    return run


def test_embed_matches_the_bare_runtime(llm_server, bare):
    """Served dense and sparse representations equal the bare runtime's, for both prompt
    sides, texts of mixed lengths batched together (token budget 1024)."""
    texts = [d["text"] for d in _corpus()[:6]] + ["short query", "a" * 10]
    with Client(llm_server["url"], api_key=ADMIN) as client:
        for side in ("query", "passage"):
            served = client.embed(texts, prompt_id="reps", kind=side, sparse_tokens=True)
            want = bare(texts, side)
            for got, ref in zip(served.data, want, strict=True):
                np.testing.assert_allclose(got.dense, ref.dense, atol=1e-5)
                assert got.sparse.indices == ref.indices.tolist()
                np.testing.assert_allclose(got.sparse.values, ref.values, atol=1e-5)
                assert len(got.sparse.tokens) == len(got.sparse.indices)
                assert got.truncated is False


def _exact(client, index_docs, queries):
    """Exact dense (inner product) and sparse (dot product of the index's quantised weights,
    as pyserini's impact search scores) runs, from /v1/embed's representations."""
    docs = client.embed([d["text"] if not d.get("title") else f"{d['title']} {d['text']}".strip()
                         for d in index_docs], prompt_id="reps", kind="passage")  # fmt: skip
    qs = client.embed(queries, prompt_id="reps", kind="query")
    ids = [d["_id"] for d in index_docs]
    dmat = np.array([e.dense for e in docs.data])
    dense_runs, sparse_runs = [], []
    for q in qs.data:
        scores = dmat @ np.array(q.dense)
        dense_runs.append(sorted(zip(ids, scores.tolist(), strict=False), key=lambda t: -t[1]))
        qw = dict(zip(q.sparse.indices, np.rint(np.array(q.sparse.values) * 100), strict=False))
        sparse_scores = []
        for doc_id, e in zip(ids, docs.data, strict=True):
            dw = dict(zip(e.sparse.indices, np.rint(np.array(e.sparse.values) * 100), strict=False))
            s = sum(qw[t] * dw[t] for t in qw.keys() & dw.keys())
            if s > 0:
                sparse_scores.append((doc_id, float(s)))
        sparse_runs.append(sorted(sparse_scores, key=lambda t: -t[1]))
    return dense_runs, sparse_runs


def test_index_and_retrieve_every_mode(llm_server):
    """Bulk add (chunked, concurrent), then dense, sparse and hybrid searches equal exact
    searches over the same representations, the hybrid fused by the official formula."""
    from parity.hybrid_reference import hybrid_search

    corpus = _corpus()
    queries = list(_queries().values())[:8]
    with Client(llm_server["url"], api_key=ADMIN) as client:
        client.create_index("demo", prompt_id="reps")
        out = client.index_documents(corpus, index_id="demo", chunk_size=7, concurrency=3)
        assert (out.added, out.skipped, out.documents) == (len(corpus), 0, len(corpus))
        dense_runs, sparse_runs = _exact(client, corpus, queries)
        k = 10
        got = {
            m: client.retrieve(queries, index_id="demo", k=k, mode=m)
            for m in ("dense", "sparse", "hybrid")
        }
    for i in range(len(queries)):
        dense = [(h.id, h.score) for h in got["dense"].results[i].hits]
        assert [d for d, _ in dense] == [d for d, _ in dense_runs[i][:k]]
        np.testing.assert_allclose(
            [s for _, s in dense], [s for _, s in dense_runs[i][:k]], atol=1e-4
        )
        sparse = [(h.id, h.score) for h in got["sparse"].results[i].hits]
        assert [s for _, s in sparse] == pytest.approx([s for _, s in sparse_runs[i][:k]])
        want = hybrid_search(dense_runs[i], sparse_runs[i], alpha=0.5)[:k]
        hybrid = [(h.id, h.score) for h in got["hybrid"].results[i].hits]
        assert [d for d, _ in hybrid] == [d for d, _ in want]
        np.testing.assert_allclose([s for _, s in hybrid], [s for _, s in want], atol=1e-4)


def test_resume_delete_and_idempotent_add(llm_server):
    corpus = _corpus()[:10]
    with Client(llm_server["url"], api_key=ADMIN) as client:
        client.create_index("resume", prompt_id="reps")
        first = client.index_documents(corpus[:4], index_id="resume")
        assert (first.added, first.documents) == (4, 4)
        again = client.index_documents(corpus, index_id="resume")
        assert (again.added, again.skipped, again.documents) == (6, 4, 10)
        forced = client.index_documents(corpus[:3], index_id="resume", skip_existing=False)
        assert (forced.added, forced.documents) == (3, 10)  # replaced, not duplicated
        assert client.delete_documents(["d00", "d01", "nope"], index_id="resume") == 2
        assert client.get_index("resume").documents == 8
        hits = client.retrieve(["volcano lava"], index_id="resume", k=10, mode="dense")
        assert "d00" not in {h.id for h in hits.results[0].hits}
        client.delete_index("resume")
        with pytest.raises(IndexNotFound):
            client.get_index("resume")


def test_refusals(llm_server):
    """404 unknown index; 400 for a document without text (nothing of the batch written),
    duplicate ids and k above the limit; 409 for an index whose prompt content changed;
    texts over the prompt's max length are truncated and said so."""
    base = llm_server["url"]
    headers = {"Authorization": f"Bearer {ADMIN}"}
    with Client(base, api_key=ADMIN) as client:
        with pytest.raises(IndexNotFound):
            client.retrieve(["x"], index_id="missing")
        client.create_index("strict", prompt_id="reps")
        bad = {"documents": [{"id": "a", "text": "fine text"}, {"id": "b"}]}
        r = httpx.post(f"{base}/v1/indexes/strict/documents", json=bad, headers=headers)
        assert r.status_code == 400 and r.json()["error"]["param"].startswith("documents")
        assert client.get_index("strict").documents == 0
        dup = {"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}
        r = httpx.post(f"{base}/v1/indexes/strict/documents", json=dup, headers=headers)
        assert r.status_code == 400 and "twice" in r.json()["error"]["message"]
        r = httpx.post(
            f"{base}/v1/retrieve",
            json={"queries": ["x"], "index_id": "strict", "k": 51},
            headers=headers,
        )
        assert r.status_code == 400 and r.json()["error"]["param"] == "k"
        # a prompt with a short max length: long texts are cut, and the answer says so
        manifest = json.loads(llm_server["artifact"].manifest.model_dump_json())
        manifest["hparams"] = {**manifest["hparams"], "passage_max_len": 8, "query_max_len": 8}
        client.register_prompt((manifest, None), prompt_id="short")
        out = client.embed(["one two three four five six seven eight nine ten eleven twelve"],
                           prompt_id="short", kind="passage")  # fmt: skip
        assert out.data[0].truncated is True
        client.create_index("short-ix", prompt_id="short")
        added = client.index_documents([("long", "word " * 50)], index_id="short-ix")
        assert added.truncated == ["long"]
        # the prompt id now names other content: the index's vectors no longer match it
        manifest["hparams"]["passage_max_len"] = 9
        client.register_prompt((manifest, None), prompt_id="short")
        with pytest.raises(IndexMismatch):
            client.retrieve(["word"], index_id="short-ix")
        with pytest.raises(InvalidInput):
            client.create_index("bad id!", prompt_id="reps")
    # the server still serves
    with Client(base, api_key=ADMIN) as client:
        assert client.retrieve(["volcano"], index_id="demo", k=3, mode="sparse").results


def test_eval_cli_reports_ndcg_through_the_served_path(llm_server, capsys, tmp_path):
    """`promptserve eval retrieve` indexes the BEIR folder and scores every mode with
    pytrec_eval. Each query shares content words with its one relevant passage only, so the
    sparse run (term matching) ranks it high even with random weights."""
    from promptserve.cli import main

    report = tmp_path / "eval.json"
    code = main(["eval", "retrieve", "--data", str(BEIR), "--index-id", "beir", "--prompt-id",
                 "reps", "--url", llm_server["url"], "--api-key", ADMIN, "--k", "50", "--json", str(report)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "nDCG@10" in printed and "hybrid" in printed
    results = json.loads(report.read_text())
    assert set(results) == {"dense", "sparse", "hybrid"}
    assert results["sparse"]["nDCG@10"] > 0.5, results
    assert results["sparse"]["Recall@100"] > 0.9, results


def test_texts_and_ids_that_are_not_unicode_text_are_refused(llm_server):
    """JSON may spell lone surrogates (`\\ud800`), which no tokenizer or UTF-8 store takes:
    the body parser refuses them (a 400), and the server keeps serving."""
    base = llm_server["url"]
    headers = {"Authorization": f"Bearer {ADMIN}", "content-type": "application/json"}
    cases = [
        ("/v1/embed", '{"texts": ["ok", "bad \\ud800"], "prompt_id": "reps"}'),
        ("/v1/retrieve", '{"queries": ["\\udfff"], "index_id": "demo"}'),
        ("/v1/indexes/demo/documents", '{"documents": [{"id": "x\\ud800", "text": "fine"}]}'),
    ]
    for path, body in cases:
        r = httpx.post(base + path, content=body.encode(), headers=headers, timeout=60)
        assert r.status_code == 400, (path, r.status_code, r.text)
        assert r.json()["error"]["type"] == "invalid_input", r.text
    with Client(base, api_key=ADMIN) as client:
        assert client.embed(["still serving"], prompt_id="reps").data


def test_cli_imports_a_prompt_and_fills_an_index(llm_server, tmp_path, capsys):
    """`promptserve import promptreps` with a custom suffix file, registered, then `promptserve
    index add` from a JSONL corpus (creating the index) and `index list`."""
    from promptserve.cli import main
    from promptserve.models.artifacts import PromptArtifact

    suffix = tmp_path / "suffix.txt"
    suffix.write_text('". One word for it:\n')
    out = tmp_path / "custom"
    code = main(["import", "promptreps", "--model", "llama3", "--backbone", llm_server["backbone"],
                 "--passage-suffix", str(suffix), "--top-k", "64", "-o", str(out)])  # fmt: skip
    assert code == 0
    artifact = PromptArtifact.load(out)
    assert artifact.manifest.passage_suffix == '". One word for it:'  # read().strip()
    assert artifact.manifest.hparams["top_k"] == 64
    common = ["--url", llm_server["url"], "--api-key", ADMIN]
    assert main(["prompts", "add", str(out), "--prompt-id", "custom", *common]) == 0
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in _corpus()[:5]))
    assert (
        main(
            ["index", "add", str(corpus), "--index-id", "cli-ix", "--prompt-id", "custom", *common]
        )
        == 0
    )
    assert main(["index", "add", str(corpus), "--index-id", "cli-ix", *common]) == 0  # resumes
    assert main(["index", "list", *common]) == 0
    printed = capsys.readouterr().out
    assert "cli-ix: 5 added, 0 already there" in printed
    assert "cli-ix: 0 added, 5 already there" in printed
    assert any(line.split()[:3] == ["cli-ix", "5", "custom"] for line in printed.splitlines())


def test_async_client_indexes_and_retrieves(llm_server):
    """The AsyncClient's retrieval calls: the same answers as the sync client's."""
    import asyncio

    from promptserve import AsyncClient

    corpus = _corpus()[:12]
    queries = ["volcano lava", "espresso coffee"]

    async def run():
        async with AsyncClient(llm_server["url"], api_key=ADMIN) as client:
            await client.create_index("async-ix", prompt_id="reps")
            added = await client.index_documents(corpus, index_id="async-ix", chunk_size=5)
            again = await client.index_documents(corpus, index_id="async-ix")
            hits = await client.retrieve(queries, index_id="async-ix", k=3, mode="hybrid")
            reps = await client.embed(queries, prompt_id="reps")
            deleted = await client.delete_documents(["d00"], index_id="async-ix")
            await client.delete_index("async-ix")
            return added, again, hits, reps, deleted

    added, again, hits, reps, deleted = asyncio.run(run())
    assert (added.added, again.skipped, deleted) == (12, 12, 1)
    with Client(llm_server["url"], api_key=ADMIN) as client:
        client.create_index("sync-ix", prompt_id="reps")
        client.index_documents(corpus, index_id="sync-ix")
        want = client.retrieve(queries, index_id="sync-ix", k=3, mode="hybrid")
        want_reps = client.embed(queries, prompt_id="reps")
    assert [[h.id for h in r.hits] for r in hits.results] == [
        [h.id for h in r.hits] for r in want.results
    ]
    np.testing.assert_allclose(reps.data[1].dense, want_reps.data[1].dense, atol=1e-6)
