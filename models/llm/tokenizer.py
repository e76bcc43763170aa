"""The LLM family's tokenizer at serving time: the bundle's `tokenizer.json` run by the
`tokenizers` library, without transformers.

PromptReps tokenizes everything with `add_special_tokens=False` (ielab/PromptReps
`dataset.py::PromptRepsEncodeCollator`, `encode.py::get_valid_tokens_values`), and a fast
Hugging Face tokenizer's `tokenizer(text, add_special_tokens=False).input_ids` is its backend
`tokenizers.Tokenizer.encode(text, add_special_tokens=False).ids`: the same normalizer,
pre-tokenizer, model and added-token splitting (so a special-token string inside a text, e.g.
`<|eot_id|>`, becomes that special token in both; tests/unit/test_promptreps_text.py checks
the equality against `PreTrainedTokenizerFast`). Truncation is not left to the backend: the
caller cuts the text's ids itself, so it knows how many were dropped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from threading import Lock

import numpy as np
from tokenizers import Tokenizer

__all__ = ["LlmTokenizer"]

# Words are encoded one at a time for the sparse term ids; corpora repeat them, so each
# replica remembers this many (about 50 MB at most).
WORD_CACHE_SIZE = 200_000


class LlmTokenizer:
    """A Hugging Face fast tokenizer's backend, used the way PromptReps calls it."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        # A tokenizer.json saved after a padded or truncated call keeps those settings; the
        # official code pads and truncates explicitly, so the backend must do neither.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tok = tokenizer
        self._words: dict[str, list[int]] = {}
        self._words_lock = Lock()
        self._expansion: np.ndarray | None = None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> LlmTokenizer:
        """Load a `tokenizer.json` (a bundle's, or `backend_tokenizer.save(...)` output)."""
        return cls(Tokenizer.from_file(os.fspath(path)))

    # -- encoding ------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """The ids of `text`, no special tokens added (`add_special_tokens=False`)."""
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """`encode` for many texts at once (the backend's batch call)."""
        if not texts:
            return []
        encodings = self._tok.encode_batch_fast(list(texts), add_special_tokens=False)
        return [list(e.ids) for e in encodings]

    def encode_words(self, words: Sequence[str]) -> list[list[int]]:
        """`encode(word)` for each word, remembered across calls: the sparse representation
        encodes every word of every text separately, and words repeat across a corpus."""
        cache = self._words
        known = [cache.get(w) for w in words]  # read once: another thread may clear it
        missing = list(dict.fromkeys(w for w, ids in zip(words, known, strict=True) if ids is None))
        fresh = dict(zip(missing, self.encode_batch(missing), strict=True))
        if fresh:
            with self._words_lock:
                if len(cache) + len(fresh) > WORD_CACHE_SIZE:
                    cache.clear()
                cache.update(fresh)
        return [fresh[w] if ids is None else ids for w, ids in zip(words, known, strict=True)]

    # -- vocabulary ----------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Ids the tokenizer can produce, added (special) tokens included. The model's output
        may be wider (embedding rows padded past the vocabulary)."""
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def id_to_token(self, token_id: int) -> str | None:
        """The vocabulary string of an id (`None` past the vocabulary)."""
        token = self._tok.id_to_token(int(token_id))
        return None if token is None else str(token)

    def token_to_id(self, token: str) -> int | None:
        token_id = self._tok.token_to_id(token)
        return None if token_id is None else int(token_id)

    def expansion_ids(self) -> np.ndarray:
        """The ids PromptReps may add beyond a text's own words (`--num_expended_tokens`):
        ielab/PromptReps `encode.py::get_filtered_ids`, over `tokenizer.get_vocab()`.

        The official test, kept as is: strip ONE leading '▁' or ' ' (sentencepiece / plain
        space; NOT byte-level BPE's 'Ġ', so for Llama-3 only tokens without a leading space
        qualify), then keep the token if it is all letters or all digits and starts with
        a-z. Sorted ascending."""
        if self._expansion is None:
            keep = []
            for token, token_id in self._tok.get_vocab(with_added_tokens=True).items():
                if token[0] in ("▁", " "):
                    token = token[1:]
                if not token.isalpha() and not token.isdigit():
                    continue
                if "a" <= token[0] <= "z":
                    keep.append(token_id)
            self._expansion = np.array(sorted(keep), dtype=np.int64)
        return self._expansion
