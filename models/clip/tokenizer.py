"""Torch-free CLIP BPE tokenizer.

Serving processes run ONNX/TensorRT text encoders and must tokenize prompts without importing
torch or open_clip. This module re-implements open_clip's default ``SimpleTokenizer``
(clean="lower", no reduction mask) on top of numpy, ``regex`` and ``ftfy`` only, and yields the
same token ids as ``open_clip.tokenize`` (parity is covered by ``tests/unit/test_tokenizer.py``).
"""

from __future__ import annotations

import gzip
import heapq
import html
import os
from collections.abc import Sequence
from functools import lru_cache

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
        """Apply BPE merges to one pre-tokenized, byte-encoded word in O(n log n).

        Reference semantics (open_clip ``SimpleTokenizer.bpe``): repeatedly take the lowest-ranked
        adjacent pair and merge all its occurrences left to right, non-overlapping (``('a', 'a')``
        on ``a a a`` gives ``aa a``). Re-scanning the word per merge is quadratic in its length,
        and the pre-tokenizer makes any run of letters a single word, so this instead keeps the
        symbols in a doubly linked list (``prev``/``nxt`` index arrays; a merge keeps the left
        node, so node ids stay in word order) and a heap of ``(rank, left node)`` candidates,
        validated lazily on pop. Why the result is identical:

        * ranks are distinct per pair, and a merge never re-creates a pair of the rank being
          merged (``first + second`` differs from both ``first`` and ``second``), so the valid
          rank-``r`` entries are exactly the occurrences present when rank ``r`` reaches the
          top, popped in ascending position, i.e. left to right;
        * an occurrence whose left node was swallowed by the previous merge (overlap, as in
          ``a a a``) fails validation and is skipped, exactly like the reference scan; merges
          elsewhere leave an occurrence's two nodes untouched, so it stays valid;
        * pairs created while merging rank ``r`` that rank below ``r`` (not expected in a table
          learned in order, but the reference allows them) are held back until every rank-``r``
          occurrence is merged, so each rank is merged as one whole round, and every round
          starts at the minimum rank over all pairs present, as in the reference.

        Each merge pushes at most two pairs, so heap operations and rank lookups are linear in
        the word's length, up to the heap's log factor.
        """
        if token in _SPECIAL_TOKENS:
            return (token,)
        symbols = [*token[:-1], token[-1] + "</w>"]
        n = len(symbols)
        if n == 1:
            return (symbols[0],)
        ranks_get = self._ranks.get
        prev = list(range(-1, n - 1))
        nxt = [*range(1, n), -1]
        heap: list[tuple[int, int]] = []
        for i in range(n - 1):
            rank = ranks_get((symbols[i], symbols[i + 1]))
            if rank is not None:
                heap.append((rank, i))
        heapq.heapify(heap)
        held_back: list[tuple[int, int]] = []
        current = -1  # rank of the round being merged
        while True:
            if held_back and (not heap or heap[0][0] != current):
                for entry in held_back:
                    heapq.heappush(heap, entry)
                held_back.clear()
            if not heap:
                break
            rank, left = heapq.heappop(heap)
            right = nxt[left]
            # Stale: the left node was merged away (its symbol is cleared), it is now last, or
            # the pair at this position changed since the entry was pushed.
            if (
                right == -1
                or not symbols[left]
                or ranks_get((symbols[left], symbols[right])) != rank
            ):
                continue
            current = rank
            symbols[left] += symbols[right]
            symbols[right] = ""
            after = nxt[right]
            nxt[left] = after
            if after != -1:
                prev[after] = left
            before = prev[left]
            for pos in (before, left):
                if pos == -1 or nxt[pos] == -1:
                    continue
                new_rank = ranks_get((symbols[pos], symbols[nxt[pos]]))
                if new_rank is None:
                    continue
                if new_rank < current:
                    held_back.append((new_rank, pos))
                else:
                    heapq.heappush(heap, (new_rank, pos))
        out: list[str] = []
        node = 0
        while node != -1:
            out.append(symbols[node])
            node = nxt[node]
        return tuple(out)

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
