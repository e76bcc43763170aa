"""Parity of the torch-free ClipTokenizer with open_clip's default tokenizer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

open_clip = pytest.importorskip("open_clip")

_MODULE_PATH = Path(__file__).resolve().parents[2] / "models" / "clip" / "tokenizer.py"


def _load_tokenizer_class() -> type:
    spec = importlib.util.spec_from_file_location("_promptserve_clip_tokenizer", _MODULE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ClipTokenizer


ClipTokenizer = _load_tokenizer_class()

TEXTS = [
    "a photo of a golden retriever.",
    "Golden_Retriever".replace("_", " "),
    "sea_anemone".replace("_", " "),
    "a photo of a Yorkshire terrier, a type of pet.",
    "Crème brûlée à la café — naïve façade, Øresund, Straße",
    "日本語のテキスト 和 中文 ещё русский",
    "emoji 🐶🐱 and symbols ™ © ½ ∞",
    "Tom &amp; Jerry &lt;3 &quot;quoted&quot; &amp;amp;",
    "numbers 1234567 3.14159 -42 1e10 2nd 1,000",
    "it's, we're, they've, I'm, you'll, he'd, can't",
    "   lots\tof   \n whitespace\r\n  ",
    "MiXeD CaSe And UPPERCASE",
    "punctuation!!! ??? ... (parens) [brackets] {braces} @#$%^&*",
    "X X X X dog.",
    "",
    "<start_of_text> literal special tokens <end_of_text>",
    "mojibake: cafÃ© and â€œquotesâ€\x9d",
    "a very long prompt " + " ".join(f"word{i} extraordinarily" for i in range(100)),
]


@pytest.fixture(scope="module")
def bpe_path() -> str:
    return open_clip.tokenizer.default_bpe()


@pytest.fixture(scope="module")
def tokenizer(bpe_path: str) -> ClipTokenizer:
    return ClipTokenizer(bpe_path)


def test_special_ids_and_vocab(tokenizer: ClipTokenizer) -> None:
    ref = open_clip.tokenizer.SimpleTokenizer()
    assert tokenizer.sot_token_id == ref.sot_token_id
    assert tokenizer.eot_token_id == ref.eot_token_id
    assert tokenizer.vocab_size == ref.vocab_size
    assert tokenizer.context_length == 77


def test_batch_parity(tokenizer: ClipTokenizer) -> None:
    ours = tokenizer(TEXTS)
    ref = open_clip.tokenize(TEXTS).numpy()
    assert ours.dtype == np.int64
    assert ours.shape == (len(TEXTS), 77)
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("text", TEXTS)
def test_single_string_parity(tokenizer: ClipTokenizer, text: str) -> None:
    np.testing.assert_array_equal(tokenizer(text), open_clip.tokenize(text).numpy())


def test_truncation_keeps_eot(tokenizer: ClipTokenizer) -> None:
    out = tokenizer(TEXTS[-1])
    assert out[0, 0] == tokenizer.sot_token_id
    assert out[0, -1] == tokenizer.eot_token_id
    assert (out != 0).all()


def test_empty_string(tokenizer: ClipTokenizer) -> None:
    out = tokenizer("")
    assert out[0, :2].tolist() == [tokenizer.sot_token_id, tokenizer.eot_token_id]
    assert not out[0, 2:].any()


def test_encode_parity(tokenizer: ClipTokenizer) -> None:
    ref = open_clip.tokenizer.SimpleTokenizer()
    for text in TEXTS:
        assert tokenizer.encode(text) == ref.encode(text), text


@pytest.mark.parametrize("context_length", [5, 16, 32])
def test_custom_context_length(bpe_path: str, context_length: int) -> None:
    ref = open_clip.tokenize(TEXTS, context_length=context_length).numpy()
    # per call
    np.testing.assert_array_equal(ClipTokenizer(bpe_path)(TEXTS, context_length), ref)
    # per instance
    custom = ClipTokenizer(bpe_path, context_length=context_length)
    assert custom.context_length == context_length
    out = custom(TEXTS)
    assert out.shape == (len(TEXTS), context_length)
    np.testing.assert_array_equal(out, ref)
