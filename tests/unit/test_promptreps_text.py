"""PromptReps' text side: vendored prompts, tokenizer, word splitting, sequences, sparse terms.

Expected values are written by hand from the official code (ielab/PromptReps @ e063628), come
from the official repository itself (the prompt files' git blob ids), from the libraries the
official code called (`PreTrainedTokenizerFast`, `tokenizer.pad`, nltk 3.8.1 outputs recorded
below), or are computed here by hand on small rows.
"""

from __future__ import annotations

import hashlib
import string
from pathlib import Path

import numpy as np
import pytest

from promptserve.models.artifacts import ArtifactError, PromptArtifact
from promptserve.models.llm.artifacts import (
    LlmArtifactManifest,
    PromptRepsParams,
    builtin_prompt,
    builtin_prompts,
    validate,
)
from promptserve.models.llm.promptreps import (
    collate,
    encode_texts,
    passage_text,
    prompt_ids,
    quantize,
    select_sparse,
    term_ids,
)
from promptserve.models.llm.tokenizer import LlmTokenizer
from promptserve.models.llm.words import STOPWORDS, STOPWORDS_ENGLISH, content_words, word_tokenize

PROMPTS = Path(__file__).resolve().parents[2] / "models" / "llm" / "prompts"

# git blob ids of the official files (`git rev-parse HEAD:prompts/<folder>/<file>` at e063628)
OFFICIAL_BLOBS = {
    "llama3/passage_prefix.txt": "795a475c1efed8e54f0ae9cd16c25ab28c944dbc",
    "llama3/passage_suffix.txt": "66a20e585d70fa703f3058eea7fa542a419d0124",
    "llama3/query_prefix.txt": "1589ce6a9387f2ab1a2ab07701de6be88818c11c",
    "llama3/query_suffix.txt": "483e7d21f06f258a7f2b1e28234c9c0354387e0d",
    "mistral/passage_prefix.txt": "e093ee50312a40398306ae442e229152ff2978d7",
    "mistral/passage_suffix.txt": "f2376333ef8c377e4a46782e7a8750b1b2639e0d",
    "mistral/query_prefix.txt": "f6eaa1e173c5163ec30d075e0fb5294f75df7579",
    "mistral/query_suffix.txt": "7a199f9fe4eecf504d075c3ab65066a66939dba1",
    "phi3/passage_prefix.txt": "24752d387f45f678cea1aeb19000d1ae2276b4eb",
    "phi3/passage_suffix.txt": "6e96c1fd6b09f503615798fb4b7859fc414e4d4d",
    "phi3/query_prefix.txt": "fba1f8f1e897ad6249cb265ab5760ba414e39169",
    "phi3/query_suffix.txt": "b88e190f8b125802f7bf6464f321046eef18e0e1",
}

LLAMA3_SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]
SP_SPECIALS = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
CORPUS = [
    "You are an AI assistant that can understand human language.",
    "Use one word to represent the passage in a retrieval task.",
    "Make sure your word is in lowercase. The word is:",
    "The quick brown fox jumps over the lazy dog; it can't stop, won't stop!",
    "Passage: Query: Zero-shot retrieval with large language models (LLMs) works.",
    "Numbers 1234 and 3.88, e-mail a@b.org, 50% off -- done? Yes...",
]


def _byte_level():
    """A tiny Llama-3-like tokenizer: byte-level BPE with Llama-3's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        special_tokens=LLAMA3_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 5, trainer)
    return tok


def _sentencepiece_like():
    """A tiny Mistral/Phi-3-like tokenizer: Metaspace BPE (a leading '▁' on the first piece)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=SP_SPECIALS, show_progress=False)
    tok.train_from_iterator(CORPUS * 5, trainer)
    return tok


@pytest.fixture(scope="module", params=["byte-level", "sentencepiece"])
def tokenizers_pair(request, tmp_path_factory):
    """(our LlmTokenizer from tokenizer.json, the HF fast tokenizer reloaded from disk with
    AutoTokenizer, the way the official code loads one)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if request.param == "byte-level":
        backend = _byte_level()
        hf = PreTrainedTokenizerFast(
            tokenizer_object=backend, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>"
        )
    else:
        backend = _sentencepiece_like()
        hf = PreTrainedTokenizerFast(
            tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
        )
    out = tmp_path_factory.mktemp(f"tok-{request.param}")
    hf.save_pretrained(out)
    hf = AutoTokenizer.from_pretrained(out)
    hf.backend_tokenizer.save(str(out / "serve-tokenizer.json"))
    return LlmTokenizer.from_file(out / "serve-tokenizer.json"), hf


# -- vendored prompts -------------------------------------------------------------------------
def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_vendored_prompt_files_are_byte_exact_copies_of_the_official_ones():
    found = {str(p.relative_to(PROMPTS)) for p in PROMPTS.glob("*/*.txt")}
    assert found == set(OFFICIAL_BLOBS)
    for name, blob in OFFICIAL_BLOBS.items():
        assert _git_blob_id((PROMPTS / name).read_bytes()) == blob, name


def test_builtin_prompts_hold_the_files_as_the_official_code_reads_them():
    """`open(path).read().strip()`: literal backslash-n stays two characters, no newline."""
    assert builtin_prompts() == ["llama3", "mistral", "phi3"]
    for model in builtin_prompts():
        manifest = builtin_prompt(model, "some-backbone").manifest
        assert isinstance(manifest, LlmArtifactManifest)
        assert (manifest.family, manifest.task, manifest.method) == (
            "llm",
            "retrieve",
            "promptreps",
        )
        for field in ("query_prefix", "query_suffix", "passage_prefix", "passage_suffix"):
            with open(PROMPTS / model / f"{field}.txt") as f:
                assert getattr(manifest, field) == f.read().strip()
    llama = builtin_prompt("llama3", "b").manifest
    assert llama.query_prefix.startswith("<|begin_of_text|><|start_header_id|>system")
    assert '<|end_header_id|>\\n\\nQuery: "' in llama.query_prefix
    assert "\n" not in llama.query_prefix
    assert llama.passage_suffix.endswith("<|start_header_id|>assistant<|end_header_id|>\\n\\nThe word is: \"")  # fmt: skip
    mistral = builtin_prompt("mistral", "b").manifest
    assert mistral.query_prefix == '<s>[INST] You are an AI assistant that can understand human language. Query: "'  # fmt: skip
    assert mistral.query_suffix == '". Use one word to represent the query in a retrieval task. Make sure your word is in lowercase. [/INST]The word is: "'  # fmt: skip
    phi3 = builtin_prompt("phi3", "b").manifest
    assert phi3.passage_prefix == '<s><|system|>\\nYou are an AI assistant that can understand human language.<|end|>\\n<|user|>\\nPassage: "'  # fmt: skip


def test_builtin_prompt_content_id_is_stable_and_depends_on_settings():
    a, b = builtin_prompt("llama3", "x"), builtin_prompt("llama3", "x")
    assert a.content_id == b.content_id
    assert builtin_prompt("llama3", "x", top_k=64).content_id != a.content_id
    assert builtin_prompt("mistral", "x").content_id != a.content_id
    assert builtin_prompt("llama3", "y").content_id != a.content_id


def test_artifact_round_trips_through_save_and_load(tmp_path):
    pytest.importorskip("promptserve.models.llm.family")
    artifact = builtin_prompt("phi3", "x", passage_max_len=256)
    loaded = PromptArtifact.load(artifact.save(tmp_path / "a"))
    assert isinstance(loaded.manifest, LlmArtifactManifest)
    assert loaded.manifest.passage_prefix == artifact.manifest.passage_prefix
    assert loaded.manifest.params.passage_max_len == 256
    assert loaded.content_id == artifact.content_id


def test_bad_prompts_and_settings_are_refused():
    with pytest.raises(ArtifactError, match="no built-in PromptReps prompt"):
        builtin_prompt("gpt2", "x")
    # the multi-token variants are not one forward pass: refused, not ignored
    with pytest.raises(ArtifactError):
        builtin_prompt("llama3", "x", word_level_reps=True)
    with pytest.raises(ArtifactError):
        builtin_prompt("llama3", "x", top_k=0)
    assert PromptRepsParams().model_dump() == {
        "query_max_len": 512,
        "passage_max_len": 512,
        "top_k": 128,
        "num_expanded_tokens": 0,
    }


def test_validate_checks_the_artifact_against_the_bundle():
    class Config:
        max_positions = 1024

    good = builtin_prompt("llama3", "x")
    validate(good, Config())
    with pytest.raises(ArtifactError, match="beyond the model's 1024 positions"):
        validate(builtin_prompt("llama3", "x", query_max_len=2048), Config())
    empty = PromptArtifact(
        good.manifest.model_copy(update={"query_prefix": "", "query_suffix": ""})
    )
    with pytest.raises(ArtifactError, match="query prompt is empty"):
        validate(empty, Config())
    bad = PromptArtifact(good.manifest.model_copy(update={"hparams": {"top_k": -1}}))
    with pytest.raises(ArtifactError, match=r"hparams\.top_k"):
        validate(bad, Config())


# -- tokenizer --------------------------------------------------------------------------------
TOKENIZER_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "  leading and trailing spaces  ",
    "",
    "new\nlines\tand\r\ntabs",
    'Passage: "',
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\\n\\nhi<|eot_id|>",
    '<s>[INST] text [/INST]The word is: "',
    '<|system|>\\nYou<|end|>\\n<|user|>\\nPassage: "x"',
    "a text that mentions <|eot_id|> and <|end|> in the middle",
    "Crème brûlée — naïve façade, 日本語, emoji 🐶",
]


def test_encode_equals_the_hf_fast_tokenizer_without_special_tokens(tokenizers_pair):
    ours, hf = tokenizers_pair
    for text in TOKENIZER_TEXTS:
        assert ours.encode(text) == hf(text, add_special_tokens=False).input_ids, text
        assert ours.encode(text) == hf.encode(text, add_special_tokens=False), text
    assert (
        ours.encode_batch(TOKENIZER_TEXTS)
        == hf(TOKENIZER_TEXTS, add_special_tokens=False).input_ids
    )
    assert ours.encode_batch([]) == []
    words = ["quick", "fox", "quick", "n't", "<|eot_id|>"]
    assert ours.encode_words(words) == [hf.encode(w, add_special_tokens=False) for w in words]
    assert ours.encode_words(words) == ours.encode_words(words)  # from the cache


def test_special_token_strings_in_text_become_special_tokens():
    """As with the HF tokenizer (split_special_tokens=False), a text containing `<|eot_id|>`
    gets that token's id, which is what the official code fed the model."""
    ours = LlmTokenizer(_byte_level())
    eot = ours.token_to_id("<|eot_id|>")
    assert eot is not None and eot in ours.encode("before <|eot_id|> after")
    assert ours.encode("<|begin_of_text|>") == [ours.token_to_id("<|begin_of_text|>")]


def test_vocabulary_accessors(tokenizers_pair):
    ours, hf = tokenizers_pair
    assert ours.vocab_size == len(hf.get_vocab())
    some = hf.encode("fox", add_special_tokens=False)[0]
    assert ours.id_to_token(some) == hf.convert_ids_to_tokens(some)
    assert ours.id_to_token(10**6) is None


def test_saved_truncation_settings_do_not_truncate(tmp_path):
    tok = _byte_level()
    tok.enable_truncation(max_length=3)
    tok.save(str(tmp_path / "tokenizer.json"))
    ours = LlmTokenizer.from_file(tmp_path / "tokenizer.json")
    assert len(ours.encode("the quick brown fox jumps over the lazy dog")) > 3


def test_expansion_ids_follow_the_official_vocabulary_filter():
    """encode.py::get_filtered_ids by hand on a known vocabulary: one leading '▁' or ' ' is
    stripped (not 'Ġ'), then all-letters or all-digits starting with a-z."""
    from tokenizers import Tokenizer, models

    vocab = {
        "▁word": 0,  # kept: '▁' stripped, letters, starts with 'w'
        "word": 1,  # kept
        "Ġword": 2,  # dropped: 'Ġ' is a letter but not a-z
        "Word": 3,  # dropped: starts upper case
        "123": 4,  # dropped: digits, but first char not a-z
        "a1": 5,  # dropped: neither all letters nor all digits
        "▁": 6,  # dropped: empty after stripping
        "é": 7,  # dropped: a letter outside a-z
        " x": 8,  # kept: ' ' stripped
        "▁▁ab": 9,  # dropped: only one '▁' is stripped
        "[UNK]": 10,
    }
    ours = LlmTokenizer(Tokenizer(models.WordLevel(vocab, unk_token="[UNK]")))
    assert ours.expansion_ids().tolist() == [0, 1, 8]


# -- word splitting ---------------------------------------------------------------------------
def test_stopwords_are_nltks_english_list_of_2024_plus_punctuation():
    """179 words (nltk_data before 2025-02-20's 19 additions) and string.punctuation."""
    assert len(STOPWORDS_ENGLISH) == len(set(STOPWORDS_ENGLISH)) == 179
    assert STOPWORDS_ENGLISH[:5] == ("i", "me", "my", "myself", "we")
    assert STOPWORDS_ENGLISH[-3:] == ("won't", "wouldn", "wouldn't")
    for word in ("the", "a", "should've", "mightn't", "ain", "ma", "y", "o"):
        assert word in STOPWORDS
    added_in_2025 = ["i'm", "i've", "i'll", "i'd", "he's", "he'd", "he'll", "she'd", "she'll",
                     "it'd", "it'll", "we're", "we've", "we'll", "we'd", "they're", "they've",
                     "they'll", "they'd"]  # fmt: skip
    assert not set(added_in_2025) & STOPWORDS
    assert set(string.punctuation) <= STOPWORDS
    assert frozenset(STOPWORDS_ENGLISH) | frozenset(string.punctuation) == STOPWORDS
    # multi-character punctuation tokens are not stop words
    for token in ("``", "''", "...", "--", "n't", "'s"):
        assert token not in STOPWORDS


# Outputs of nltk 3.8.1 (`word_tokenize(text.lower())` with the English Punkt model), the
# release the official runs used; the last four differ under nltk >= 3.9 (checked).
NLTK_381 = {
    "The quick brown fox jumps over the lazy dog. It was fast! Was it? Yes.":
        ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", ".", "it", "was",
         "fast", "!", "was", "it", "?", "yes", "."],
    "Dr. Smith went to Washington. He met Mr. Jones at 3 p.m. on Jan. 5.":
        ["dr.", "smith", "went", "to", "washington", ".", "he", "met", "mr.", "jones", "at", "3",
         "p.m.", "on", "jan.", "5", "."],
    "U.S. officials met on Monday. The meeting ended.":
        ["u.s.", "officials", "met", "on", "monday", ".", "the", "meeting", "ended", "."],
    'She said, "It is done." Then: (maybe) [not] {ever} <tag>... ok?!':
        ["she", "said", ",", "``", "it", "is", "done", ".", "''", "then", ":", "(", "maybe", ")",
         "[", "not", "]", "{", "ever", "}", "<", "tag", ">", "...", "ok", "?", "!"],
    "e-mail me at a@b.org; cost $3.88 (50%) & more -- fast*":
        ["e-mail", "me", "at", "a", "@", "b.org", ";", "cost", "$", "3.88", "(", "50", "%", ")",
         "&", "more", "--", "fast", "*"],
    "I can't believe it's not butter; they'll see.":
        ["i", "ca", "n't", "believe", "it", "'s", "not", "butter", ";", "they", "'ll", "see",
         "."],
    "'Tis the season. 'single quotes' here.":
        ["'t", "is", "the", "season", ".", "'single", "quotes", "'", "here", "."],
    "They can't\nstop. We won't\tgo.":
        ["they", "can't", "stop", ".", "we", "won't", "go", "."],
    "Scores rose 10–20 percent—a record—over 1990–2000.":
        ["scores", "rose", "10–20", "percent—a", "record—over", "1990–2000", "."],
    "He said “stop.” Then he left.":
        ["he", "said", "“", "stop.", "”", "then", "he", "left", "."],
}  # fmt: skip


def test_word_tokenize_matches_nltk_381():
    for text, expected in NLTK_381.items():
        assert word_tokenize(text.lower()) == expected, text


def test_content_words_drop_stopwords_and_single_punctuation():
    assert content_words("The quick brown fox can't jump. It's OVER!") == [
        "quick", "brown", "fox", "ca", "n't", "jump", "'s",
    ]  # fmt: skip
    assert content_words('He said "yes" -- and... left.') == ["said", "``", "yes", "''", "--", "...", "left"]  # fmt: skip
    assert content_words("the and of") == []
    assert content_words("") == []


# -- sequences --------------------------------------------------------------------------------
def test_prompt_ids_tokenize_prefix_and_suffix_apart(tokenizers_pair):
    ours, hf = tokenizers_pair
    manifest = builtin_prompt("llama3", "x").manifest
    prefix, suffix = prompt_ids(ours, manifest, "passage")
    assert prefix == hf.encode(manifest.passage_prefix, add_special_tokens=False)
    assert suffix == hf.encode(manifest.passage_suffix, add_special_tokens=False)
    empty = manifest.model_copy(update={"query_prefix": "", "query_suffix": ""})
    with pytest.raises(ArtifactError):
        prompt_ids(ours, empty, "query")


def test_encode_texts_truncates_only_the_text_and_counts(tokenizers_pair):
    """The collator: tokenizer(texts, truncation=True, max_length=max_len,
    add_special_tokens=False), then prefix + ids + suffix; texts stripped first."""
    ours, hf = tokenizers_pair
    prefix, suffix = [7, 8, 9], [5]
    texts = ["  The quick brown fox jumps over the lazy dog.  ", "fox", ""]
    max_len = 4
    got = encode_texts(ours, prefix, suffix, texts, max_len)
    stripped = [t.strip() for t in texts]
    full = hf(stripped, add_special_tokens=False).input_ids
    cut = hf(stripped, truncation=True, max_length=max_len, add_special_tokens=False).input_ids
    assert len(full[0]) > max_len >= len(full[1])  # the first is truncated, the second not
    for e, f, c in zip(got, full, cut, strict=True):
        assert e.ids == prefix + c + suffix
        assert e.text_tokens == len(f)
        assert e.truncated == (len(f) > max_len)
    assert got[2].ids == prefix + suffix and got[2].text_tokens == 0
    assert passage_text("body", "Title") == "Title body"
    assert passage_text("  body ", None) == "body"
    assert passage_text("body", "") == "body"


def test_collate_pads_right_to_a_multiple_of_16():
    ids, mask = collate([[1, 2, 3], list(range(10, 27))], pad_id=99)
    assert ids.dtype == mask.dtype == np.int64
    assert ids.shape == (2, 32)  # longest 17 -> 32
    assert ids[0].tolist() == [1, 2, 3] + [99] * 29
    assert ids[1].tolist() == list(range(10, 27)) + [99] * 15
    assert mask[0].tolist() == [1] * 3 + [0] * 29
    assert mask[1].tolist() == [1] * 17 + [0] * 15
    assert collate([[1] * 16], 0)[0].shape == (1, 16)  # already a multiple
    assert collate([[1] * 5, [2] * 3], 0, multiple=None)[0].shape == (2, 5)
    with pytest.raises(ValueError):
        collate([], 0)


def test_collate_equals_hf_tokenizer_pad(tokenizers_pair):
    import copy

    hf = copy.deepcopy(tokenizers_pair[1])
    if hf.pad_token_id is None:  # encode.py: pad = eos when the tokenizer has none
        hf.pad_token_id = hf.eos_token_id
    hf.padding_side = "right"
    seqs = [[3, 4, 5], [6] * 20, [7] * 9]
    want = hf.pad({"input_ids": seqs}, padding=True, pad_to_multiple_of=16, return_tensors="np")
    ids, mask = collate(seqs, hf.pad_token_id, 16)
    np.testing.assert_array_equal(ids, want["input_ids"])
    np.testing.assert_array_equal(mask, want["attention_mask"])


# -- sparse terms -----------------------------------------------------------------------------
def test_term_ids_are_the_ids_of_each_content_word_encoded_alone(tokenizers_pair):
    ours, hf = tokenizers_pair
    text = "The quick brown fox can't jump over THE lazy dog. Fox!"
    words = ["quick", "brown", "fox", "ca", "n't", "jump", "lazy", "dog"]  # by hand
    want = sorted({i for w in words for i in hf.encode(w, add_special_tokens=False)})
    got = term_ids(ours, text)
    assert got.dtype == np.int64
    assert got.tolist() == want
    assert term_ids(ours, "the of and . ,").tolist() == []


def test_select_sparse_keeps_the_top_k_text_ids_by_weight():
    row = np.array([0.0, 0.5, 2.0, 0.1, 3.0, 0.0, 1.5, 0.7], np.float32)
    idx, val = select_sparse(row, np.array([1, 2, 3, 6]), top_k=3)
    assert idx.tolist() == [2, 6, 1] and idx.dtype == np.int64
    np.testing.assert_array_equal(val, np.array([2.0, 1.5, 0.5], np.float32))
    assert val.dtype == np.float32
    # fewer ids than top_k: all of them, zero weights kept as the official vector keeps them
    idx, val = select_sparse(row, np.array([0, 5, 4]), top_k=128)
    assert idx.tolist() == [4, 0, 5]
    assert val.tolist() == [3.0, 0.0, 0.0]
    # ties: lower id first, and the lower ids make the cut
    tied = np.array([1.0, 1.0, 1.0, 2.0], np.float32)
    assert select_sparse(tied, np.array([0, 1, 2, 3]), top_k=2)[0].tolist() == [3, 0]


def test_select_sparse_falls_back_to_the_top_10_of_the_row():
    row = np.arange(20, dtype=np.float32)[::-1].copy()  # id i has weight 19 - i
    idx, val = select_sparse(row, np.array([], np.int64), top_k=128)
    assert idx.tolist() == list(range(10))
    assert val.tolist() == [19.0 - i for i in range(10)]
    small = np.array([0.2, 0.1], np.float32)
    assert select_sparse(small, np.array([], np.int64), top_k=128)[0].tolist() == [0, 1]


def test_select_sparse_appends_expansion_terms_from_outside_the_text():
    row = np.array([0.0, 5.0, 4.0, 3.0, 2.0, 1.0], np.float32)
    idx, val = select_sparse(
        row, np.array([4, 5]), top_k=128, expansion_ids=np.array([1, 2, 3, 4]), expansion_k=2
    )
    # text ids first (4, 5), then the best two of {1, 2, 3} (4 is in the text)
    assert idx.tolist() == [4, 5, 1, 2]
    assert val.tolist() == [2.0, 1.0, 5.0, 4.0]
    # with no text ids the fallback's top 10 already holds them: nothing repeated
    idx, _ = select_sparse(
        row, np.array([], np.int64), top_k=128, expansion_ids=np.array([1, 2]), expansion_k=2
    )
    assert idx.tolist() == [1, 2, 3, 4, 5, 0]


def test_quantize_is_the_official_rint_times_100():
    values = np.array([0.0, 0.004, 0.005, 0.015, 0.125, 1.23456, 2.5], np.float32)
    # rint rounds halves to even: 0.5 -> 0, 12.5 -> 12, 250 stays
    assert quantize(values).tolist() == [0, 0, 0, 2, 12, 123, 250]
    assert quantize(values).dtype == np.int64
