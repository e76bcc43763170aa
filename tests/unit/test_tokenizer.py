"""Parity of the torch-free ClipTokenizer with open_clip's default tokenizer."""

from __future__ import annotations

import gzip
import importlib.util
import random
import time
from pathlib import Path
from typing import Any

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


# --- BPE merge algorithm: parity on adversarial words and near-linear cost -------------------
# The reference tokenizer is quadratic in a word's length on non-periodic words: its inputs stay
# under ~3,000 characters (periodic words converge in a few merge rounds, so longer is cheap).

_LOWER = "abcdefghijklmnopqrstuvwxyz"


def _random_word(rng: random.Random, alphabet: str, length: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


def _random_chars(rng: random.Random, first: int, last: int, length: int) -> str:
    return "".join(chr(rng.randint(first, last)) for _ in range(length))


_ADV_RNG = random.Random(20240611)
ADVERSARIAL_TEXTS = [
    "a" * 5000,
    "ab" * 3000,
    "aaab" * 1000,
    "a" * 2,
    "a" * 3,
    "aaa bbb aaaa aaaaa aaaaaa aaaaaaa",
    "abab ababa babab abababab",
    "na" * 40 + " batman",
    "banana" * 300,
    "lalala" * 200 + " " + "tralala" * 150,
    "abcabcabc" * 200,
    "supercalifragilisticexpialidocious" * 50,
    "Пример русского текста " * 20 + "ещё" * 300,
    "日本語のテキスト" * 100,
    "中文" * 700,
    "한국어텍스트" * 200,
    "ελληνικά" * 150,
    "العربية" * 200,
    "हिन्दी पाठ" * 100,
    "ภาษาไทย" * 200,
    "🐶" * 700,
    "🐶🐱🦊🐻" * 150,
    "👨‍👩‍👧‍👦" * 100,
    "🇫🇷🇯🇵" * 150,
    _random_chars(_ADV_RNG, 0x1F300, 0x1F64F, 600),
    _random_chars(_ADV_RNG, 0x4E00, 0x9FFF, 800),
    _random_chars(_ADV_RNG, 0x0430, 0x044F, 2000),
    _random_word(_ADV_RNG, _LOWER, 3000),
    _random_word(_ADV_RNG, "ab", 2500),
    _random_word(_ADV_RNG, "etaoin", 2500),
]


def _random_words() -> list[str]:
    """A few hundred seeded words of lengths 1..200: small alphabets make many merges apply."""
    rng = random.Random(1234)
    alphabets = ["ab", "abc", "aeiou", "etaoinshr", "st", _LOWER]
    return [
        _random_word(rng, alphabet, rng.randint(1, 200))
        for alphabet in alphabets
        for _ in range(60)
    ]


@pytest.fixture(scope="module")
def reference() -> Any:
    return open_clip.tokenizer.SimpleTokenizer()


@pytest.mark.parametrize("index", range(len(ADVERSARIAL_TEXTS)))
def test_adversarial_encode_parity(tokenizer: ClipTokenizer, reference: Any, index: int) -> None:
    text = ADVERSARIAL_TEXTS[index]
    assert tokenizer.encode(text) == reference.encode(text)


def test_adversarial_batch_parity(tokenizer: ClipTokenizer) -> None:
    np.testing.assert_array_equal(
        tokenizer(ADVERSARIAL_TEXTS), open_clip.tokenize(ADVERSARIAL_TEXTS).numpy()
    )


def test_random_words_parity(tokenizer: ClipTokenizer, reference: Any) -> None:
    words = _random_words()
    mismatched = [w for w in words if tokenizer.encode(w) != reference.encode(w)]
    assert not mismatched
    # and the same words as one text (one encode over many pre-tokenized words)
    text = " ".join(words)
    assert tokenizer.encode(text) == reference.encode(text)


def test_random_non_latin_words_parity(tokenizer: ClipTokenizer, reference: Any) -> None:
    rng = random.Random(99)
    ranges = [(0x0430, 0x044F), (0x3041, 0x3096), (0x4E00, 0x4E80), (0xAC00, 0xAC40)]
    words = [
        _random_chars(rng, first, last, rng.randint(1, 120))
        for first, last in ranges
        for _ in range(40)
    ]
    mismatched = [w for w in words if tokenizer.encode(w) != reference.encode(w)]
    assert not mismatched


def _write_merges(path: Path, merges: list[tuple[str, str]]) -> str:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("#version: test\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return str(path)


def test_lower_rank_pair_created_mid_round(tmp_path: Path) -> None:
    """A merge creating a pair ranked *below* the one being merged (``('ab', 'a')`` < ``('a',
    'b')``): the reference finishes every ``a b`` first, so ``ababx`` -> ``ab ab x``; merging
    the new pair immediately would give ``aba b x`` instead."""
    bpe_path = _write_merges(tmp_path / "merges.txt.gz", [("ab", "a"), ("a", "b")])
    ours = ClipTokenizer(bpe_path)
    ref = open_clip.tokenizer.SimpleTokenizer(bpe_path=bpe_path)
    assert ref.bpe("ababx") == "ab ab x</w>"
    assert ours._bpe_uncached("ababx") == ("ab", "ab", "x</w>")


def test_random_merge_tables_parity(tmp_path: Path) -> None:
    """Random merge tables with shuffled ranks (pairs of tokens created by later merges may rank
    lower), checked word by word against the reference ``bpe``."""
    rng = random.Random(7)
    for table in range(12):
        alphabet = "abc" if table % 2 else "ab"
        inner = list(alphabet)
        finals = [c + "</w>" for c in alphabet]
        merges: list[tuple[str, str]] = []
        seen: set[tuple[str, str]] = set()
        while len(merges) < 40:
            first = rng.choice(inner)
            second = rng.choice(inner + finals)
            if (first, second) in seen or len(first) + len(second) > 12:
                continue
            seen.add((first, second))
            merges.append((first, second))
            (finals if second.endswith("</w>") else inner).append(first + second)
        rng.shuffle(merges)
        bpe_path = _write_merges(tmp_path / f"merges{table}.txt.gz", merges)
        ours = ClipTokenizer(bpe_path)
        ref = open_clip.tokenizer.SimpleTokenizer(bpe_path=bpe_path)
        for _ in range(150):
            word = _random_word(rng, alphabet, rng.randint(1, 60))
            assert ours._bpe_uncached(word) == tuple(ref.bpe(word).split(" ")), (merges, word)


class _CountingRanks(dict):  # type: ignore[type-arg]
    """Merge-rank table counting every lookup. Each heap push follows a lookup and each pop
    follows a push, so the count bounds the heap work too."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.lookups = 0

    def get(self, key: object, default: object = None) -> object:
        self.lookups += 1
        return super().get(key, default)

    def __getitem__(self, key: object) -> object:
        self.lookups += 1
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.lookups += 1
        return super().__contains__(key)


def test_bpe_cost_is_near_linear(bpe_path: str) -> None:
    """16x longer word -> ~16x the rank lookups (O(n log n) merges), not ~16^2 (re-scan per
    merge). Counts operations instead of timing them: no wall-clock threshold to flake."""
    tokenizer = ClipTokenizer(bpe_path)
    counting = _CountingRanks(tokenizer._ranks)
    tokenizer._ranks = counting
    rng = random.Random(0)
    lookups = {}
    for length in (1000, 16000):
        word = _random_word(rng, _LOWER, length)
        counting.lookups = 0
        start = time.perf_counter()
        ids = tokenizer.encode(word)
        elapsed = time.perf_counter() - start
        lookups[length] = counting.lookups
        assert ids  # one word of random letters
        print(f"\n{length}-letter word: {counting.lookups} rank lookups, {elapsed:.3f}s")
    ratio = lookups[16000] / lookups[1000]
    print(f"lookup ratio for 16x length: {ratio:.1f}")
    assert ratio < 25, lookups
