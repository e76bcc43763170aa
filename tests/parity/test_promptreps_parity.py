"""Parity of promptserve's PromptReps representations with the official encode.

Pipeline under test, for each engine (eager torch, ONNX Runtime on the exported bundle) and
each tiny seeded model (Llama, Qwen2): a built-in prompt artifact -> the bundle's
tokenizer.json (`LlmTokenizer`) -> `represent` (sequences, padding, the graph's one forward
pass, the sparse selection). Expected values come from `promptreps_reference.py`, the
official encode transcribed in torch + transformers + nltk (ielab/PromptReps @ e063628),
run on the same Hugging Face model folder.

Checked: the token sequences and masks equal the official collator's; dense vectors within
1e-4; the same sparse ids (up to ids tied at the top-k cut-off, whose choice torch.topk leaves
open) with weights within 1e-4; the official pyserini vector (token string -> rint(100 w))
equal to ours quantised (within one unit, for a weight within float noise of a half).
Truncation is exercised (small max lengths and a long passage), as are the top-k cut (a
passage with more than 128 word ids) and the top-10 fallback (a text of stop words only).
The parity texts avoid the few constructs where the installed nltk (>= 3.9, the reference's)
splits words differently from the official 3.8.1 (see models/llm/words.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import promptreps_reference as ref  # noqa: E402

from promptserve.models.bundle import Bundle  # noqa: E402
from promptserve.models.llm.artifacts import builtin_prompt  # noqa: E402
from promptserve.models.llm.bundle import llm_config  # noqa: E402
from promptserve.models.llm.promptreps import (  # noqa: E402
    collate,
    encode_texts,
    passage_text,
    prompt_ids,
    quantize,
    represent,
    term_ids,
)
from promptserve.models.llm.runtime import LlmGraphs  # noqa: E402
from promptserve.models.llm.tokenizer import LlmTokenizer  # noqa: E402
from promptserve.serving.engines.base import EngineOptions, create_engine  # noqa: E402

ATOL = 1e-4
ENGINES = ("torch", "onnxruntime")
QUERY_MAX_LEN, PASSAGE_MAX_LEN = 16, 48

QUERIES = [
    "What do farmers sell in the market?",
    "how does the heart pump blood",
    "the of and",  # stop words only: the official top-10 fallback
    "Which animals live in the forest and the desert, and why do they survive there at all?",
]
_WHO = [
    "farmer",
    "baker",
    "doctor",
    "nurse",
    "trader",
    "fisher",
    "child",
    "scientist",
    "engineer",
    "teacher",
]
_DID = [
    "walked",
    "waited",
    "worked",
    "rested",
    "talked",
    "listened",
    "sang",
    "wrote",
    "counted",
    "painted",
]
_WHERE = ["old", "new", "busy", "quiet", "small", "large", "early", "late", "green", "golden"]
_LONG = " ".join(
    f"The {w} {v} near the river and the {x} market."
    for w, v, x in zip(_WHO, _DID, _WHERE, strict=True)
)
PASSAGES = [
    ("Village", "The morning light crept over the hills and touched the roofs of the village."),
    ("", "Doctors diagnose illness, prescribe medicine and advise patients on diet and sleep."),
    ("Deserts", "Deserts receive little rain; yet cactus, lizards and camels survive the heat."),
    ("", _LONG),  # past passage_max_len: truncated
    ("Cells", "Cells contain genes written in DNA. Proteins fold into shapes."),
]


@pytest.fixture(scope="module")
def nltk_official(tmp_path_factory):
    return ref.use_nltk_data(ref.make_nltk_data(tmp_path_factory.mktemp("nltk_data")))


@pytest.fixture(scope="module")
def tiny_qwen_bundle(tiny_qwen_dir, tmp_path_factory) -> Path:
    from promptserve.models.llm.export.onnx import export_bundle

    return export_bundle(
        f"local-dir:{tiny_qwen_dir}", tmp_path_factory.mktemp("qwen-bundle"), progress=False
    )


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def model_case(request, tiny_llm_dir, tiny_qwen_dir, tiny_llm_bundle, tiny_qwen_bundle):
    """(model folder, bundle, built-in prompt name): Llama with Llama-3's prompt, Qwen2 with
    Phi-3's (its `<s>`, `<|system|>` are plain text to this tokenizer: still the official
    pipeline, on other strings)."""
    if request.param == "llama":
        return tiny_llm_dir, Bundle(tiny_llm_bundle), "llama3"
    return tiny_qwen_dir, Bundle(tiny_qwen_bundle), "phi3"


@pytest.fixture(scope="module")
def official(model_case, nltk_official):
    """The reference's representations of QUERIES and PASSAGES, with their batches."""
    model_dir, _, prompt = model_case
    tokenizer, model = ref.load(model_dir)
    folder = Path(ref.__file__).resolve().parents[2] / "models" / "llm" / "prompts" / prompt
    read = {name: ref.read_prompt(folder / f"{name}.txt") for name in
            ("query_prefix", "query_suffix", "passage_prefix", "passage_suffix")}  # fmt: skip
    word_tokenize, stopwords = nltk_official
    queries = [ref.format_query(q) for q in QUERIES]
    passages = [ref.format_passage(t, x) for t, x in PASSAGES]
    return {
        "tokenizer": tokenizer,
        "query": ref.represent(
            model, tokenizer, queries, read["query_prefix"], read["query_suffix"],
            QUERY_MAX_LEN, word_tokenize, stopwords,
        ),
        "passage": ref.represent(
            model, tokenizer, passages, read["passage_prefix"], read["passage_suffix"],
            PASSAGE_MAX_LEN, word_tokenize, stopwords,
        ),
    }  # fmt: skip


def _ours(model_case):
    _, bundle, prompt = model_case
    config = llm_config(bundle)
    tokenizer = LlmTokenizer.from_file(bundle.dir / config.tokenizer_file)
    artifact = builtin_prompt(
        prompt, bundle.backbone_id, query_max_len=QUERY_MAX_LEN, passage_max_len=PASSAGE_MAX_LEN
    )
    return bundle, config, tokenizer, artifact.manifest


def _texts(side):
    return QUERIES if side == "query" else [passage_text(x, t) for t, x in PASSAGES]


@pytest.mark.parametrize("side", ["query", "passage"])
def test_sequences_equal_the_official_collator(model_case, official, side):
    _, config, tokenizer, manifest = _ours(model_case)
    prefix, suffix = prompt_ids(tokenizer, manifest, side)
    max_len = manifest.params.max_len(side)
    encoded = encode_texts(tokenizer, prefix, suffix, _texts(side), max_len)
    ids, mask = collate([e.ids for e in encoded], config.pad_token_id, config.pad_to_multiple_of)
    _, batch = official[side]
    np.testing.assert_array_equal(ids, batch["input_ids"].numpy())
    np.testing.assert_array_equal(mask, batch["attention_mask"].numpy())
    assert any(e.truncated for e in encoded) and not all(e.truncated for e in encoded)
    for e in encoded:
        assert e.truncated == (e.text_tokens > max_len)


def _assert_sparse_matches(indices, values, want: dict[int, float], vector, tokenizer):
    """Same ids up to ties at the cut-off, weights within ATOL, the official vector."""
    assert len(indices) == len(want)
    got = dict(zip(indices.tolist(), values.tolist(), strict=True))
    cut = min(want.values())
    for token_id, weight in got.items():
        if token_id in want:
            assert abs(weight - want[token_id]) <= ATOL
        else:  # a different pick among ids tied at the cut-off value
            assert abs(weight - cut) <= ATOL
    for token_id, weight in want.items():
        if token_id not in got:
            assert abs(weight - cut) <= ATOL
    strings = {
        tokenizer.id_to_token(i): int(q) for i, q in zip(indices, quantize(values), strict=True)
    }
    for token, q in vector.items():
        if token in strings:
            assert abs(strings[token] - q) <= 1, token


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("side", ["query", "passage"])
def test_represent_matches_the_official_encode(model_case, official, engine, side):
    bundle, config, tokenizer, manifest = _ours(model_case)
    graphs = LlmGraphs(create_engine(engine, bundle, EngineOptions()))
    reps = represent(graphs, tokenizer, manifest, _texts(side), side, pad_id=config.pad_token_id)
    want, _ = official[side]
    assert len(reps) == len(want)
    for rep, (dense, weights, vector) in zip(reps, want, strict=True):
        assert rep.dense.dtype == np.float32
        np.testing.assert_allclose(rep.dense, dense, atol=ATOL, rtol=0)
        assert np.diff(rep.values).max(initial=0) <= 0  # by weight, descending
        _assert_sparse_matches(rep.indices, rep.values, weights, vector, tokenizer)
    # the cases the texts were chosen for
    if side == "query":
        assert len(reps[2].indices) == 10  # stop words only: the top-10 fallback
        assert reps[3].truncated and not reps[0].truncated
    else:
        assert reps[3].truncated and reps[3].text_tokens > PASSAGE_MAX_LEN
        assert not reps[0].truncated


def test_top_k_cuts_a_passage_with_more_word_ids(model_case, nltk_official):
    """More than 128 word ids: the top 128 by weight, as the official topk(128) keeps."""
    model_dir, bundle, prompt = model_case
    word_tokenize, stopwords = nltk_official
    tokenizer_hf, model = ref.load(model_dir)
    from promptserve.models.llm.export.seeded import CORPUS

    text = " ".join(CORPUS.splitlines()[:30])  # the seeded vocabulary's words: one id each
    folder = Path(ref.__file__).resolve().parents[2] / "models" / "llm" / "prompts" / prompt
    pre = ref.read_prompt(folder / "passage_prefix.txt")
    suf = ref.read_prompt(folder / "passage_suffix.txt")
    (want,), _ = ref.represent(model, tokenizer_hf, [text], pre, suf, 512, word_tokenize, stopwords)
    _, config, tokenizer, _ = _ours(model_case)
    manifest = builtin_prompt(prompt, bundle.backbone_id).manifest
    graphs = LlmGraphs(create_engine("onnxruntime", bundle, EngineOptions()))
    (rep,) = represent(graphs, tokenizer, manifest, [text], "passage", pad_id=config.pad_token_id)
    assert len(term_ids(tokenizer, text)) > 128
    assert len(rep.indices) == 128
    np.testing.assert_allclose(rep.dense, want[0], atol=ATOL, rtol=0)
    _assert_sparse_matches(rep.indices, rep.values, want[1], want[2], tokenizer)


@pytest.mark.parametrize("side", ["query", "passage"])
def test_expansion_terms_match_the_official_encode(model_case, nltk_official, side):
    """`--num_expended_tokens 5`: the five best ids from outside the text (of the official
    vocabulary filter) follow the text's own terms."""
    model_dir, bundle, prompt = model_case
    word_tokenize, stopwords = nltk_official
    tokenizer_hf, model = ref.load(model_dir)
    folder = Path(ref.__file__).resolve().parents[2] / "models" / "llm" / "prompts" / prompt
    pre = ref.read_prompt(folder / f"{side}_prefix.txt")
    suf = ref.read_prompt(folder / f"{side}_suffix.txt")
    texts = _texts(side)
    formatted = [ref.format_query(q) for q in QUERIES] if side == "query" else texts
    want, _ = ref.represent(
        model, tokenizer_hf, formatted, pre, suf, 512, word_tokenize, stopwords, expand=5
    )
    _, config, tokenizer, _ = _ours(model_case)
    manifest = builtin_prompt(prompt, bundle.backbone_id, num_expanded_tokens=5).manifest
    graphs = LlmGraphs(create_engine("onnxruntime", bundle, EngineOptions()))
    reps = represent(graphs, tokenizer, manifest, texts, side, pad_id=config.pad_token_id)
    for rep, text, (dense, weights, vector) in zip(reps, texts, want, strict=True):
        np.testing.assert_allclose(rep.dense, dense, atol=ATOL, rtol=0)
        own = len(term_ids(tokenizer, text))
        if own:  # text terms, then five expansion terms from outside the text
            assert len(rep.indices) == min(own, 128) + 5
            assert not set(rep.indices[-5:].tolist()) & set(term_ids(tokenizer, text).tolist())
        _assert_sparse_matches(rep.indices, rep.values, weights, vector, tokenizer)
