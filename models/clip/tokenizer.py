"""Torch-free CLIP BPE tokenizer.

Serving processes run ONNX/TensorRT text encoders and must tokenize prompts without importing
torch or open_clip. This module re-implements open_clip's default ``SimpleTokenizer``
(clean="lower", no reduction mask) on top of numpy, ``regex`` and ``ftfy`` only, and yields the
same token ids as ``open_clip.tokenize`` (parity is covered by ``tests/unit/test_tokenizer.py``).
"""

from __future__ import annotations

import gzip
import html
import os
from collections.abc import Sequence
from functools import lru_cache
from itertools import pairwise

import ftfy
import numpy as np
import regex

__all__ = ["ClipTokenizer"]

_SPECIAL_TOKENS = ("<start_of_text>", "<end_of_text>")
_NUM_MERGES = 49152 - 256 - 2  # merges used by CLIP (the first line of the file is a header)
_WORD_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def _bytes_to_unicode() -> dict[int, str]:
    """Reversible byte -> printable unicode char map used by GPT-2/CLIP byte-level BPE."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def _clean(text: str) -> str:
    """open_clip's ``clean="lower"``: ftfy + double html unescape, collapse whitespace, lower."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).lower()


class ClipTokenizer:
    """CLIP byte-level BPE tokenizer, id-compatible with open_clip's default tokenizer."""

    def __init__(
        self, bpe_path: str | os.PathLike[str], context_length: int = 77, cache_size: int = 65536
    ) -> None:
        with gzip.open(bpe_path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")[1 : _NUM_MERGES + 1]
        merges = [tuple(line.split()) for line in lines]
        self._byte_encoder = _bytes_to_unicode()
        base = list(self._byte_encoder.values())
        vocab = base + [c + "</w>" for c in base] + ["".join(m) for m in merges]
        vocab += _SPECIAL_TOKENS
        self._encoder: dict[str, int] = {tok: i for i, tok in enumerate(vocab)}
        self._ranks: dict[tuple[str, ...], int] = {m: i for i, m in enumerate(merges)}
        self._pattern = regex.compile(
            "|".join(_SPECIAL_TOKENS) + "|" + _WORD_PATTERN, regex.IGNORECASE
        )
        self._bpe = lru_cache(maxsize=cache_size)(self._bpe_uncached)
        self.vocab_size: int = len(self._encoder)
        self.sot_token_id: int = self._encoder[_SPECIAL_TOKENS[0]]
        self.eot_token_id: int = self._encoder[_SPECIAL_TOKENS[1]]
        self.context_length: int = context_length

    def _bpe_uncached(self, token: str) -> tuple[str, ...]:
        """Apply BPE merges to one pre-tokenized, byte-encoded word."""
        if token in _SPECIAL_TOKENS:
            return (token,)
        word = [*token[:-1], token[-1] + "</w>"]
        while len(word) > 1:
            bigram = min(
                pairwise(word),
                key=lambda pair: self._ranks.get(pair, float("inf")),
            )
            if bigram not in self._ranks:
                break
            first, second = bigram
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return tuple(word)

    def encode(self, text: str) -> list[int]:
        """BPE ids of ``text`` without start/end-of-text tokens."""
        ids: list[int] = []
        for token in self._pattern.findall(_clean(text)):
            encoded = "".join(self._byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self._encoder[piece] for piece in self._bpe(encoded))
        return ids

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> np.ndarray:
        """Tokenize to an int64 ``[N, context_length]`` array: sot + ids + eot, zero padded.

        Over-long sequences are truncated to ``context_length`` with the last id forced to eot,
        exactly as open_clip does.
        """
        if isinstance(texts, str):
            texts = [texts]
        length = context_length or self.context_length
        if not length:
            raise ValueError("context_length must be a positive integer")
        result = np.zeros((len(texts), length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.sot_token_id, *self.encode(text), self.eot_token_id]
            if len(ids) > length:
                ids = ids[:length]
                ids[-1] = self.eot_token_id
            result[row, : len(ids)] = ids
        return result
