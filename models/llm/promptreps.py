"""PromptReps around the graph, in numpy: token sequences in, sparse terms out.

The exported graph (models/llm/graphs.py) does the one forward pass: for right-padded token
sequences it returns the L2-normalised last hidden state at each sequence's last real token
(dense) and `log(1 + relu(logits))` there (sparse, one row over the vocabulary). Everything
else the official encode does is here, each step following ielab/PromptReps (commit e063628):

- the token sequence: `prefix ids + text ids[:max_len] + suffix ids`, the three tokenized
  apart without special tokens (`dataset.py::PromptRepsEncodeCollator`), the text stripped
  first (`dataset.py::PromptRepsEncodeDataset`);
- right padding to the batch's longest row rounded up to a multiple of 16 (the collator's
  `tokenizer.pad(padding=True, pad_to_multiple_of=16)`; `encode.py::main` pads right and uses
  EOS as PAD when the tokenizer has none);
- the sparse terms: the vocabulary ids of the text's words, lower-cased, stop words and
  punctuation dropped, each word encoded on its own; the top 128 of the sparse row over
  those ids, or the row's top 10 when the text has no such id (`encode.py::
  get_valid_tokens_values`); pyserini then indexes `rint(weight * 100)` (`quantize`).

`represent` composes the pieces for one batch on any runtime; the serving encoder composes
the same pieces around its token-budget batching.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from promptserve.models.artifacts import ArtifactError
from promptserve.models.llm.artifacts import LlmArtifactManifest, PromptRepsParams, Side
from promptserve.models.llm.tokenizer import LlmTokenizer
from promptserve.models.llm.words import content_words

__all__ = [
    "FALLBACK_TOP_K",
    "PAD_TO_MULTIPLE_OF",
    "EncodedText",
    "Representation",
    "collate",
    "encode_texts",
    "passage_text",
    "prompt_ids",
    "quantize",
    "represent",
    "select_sparse",
    "term_ids",
]

#: terms kept for a text none of whose words has an id (official: `logits.topk(10)`)
FALLBACK_TOP_K = 10
#: the collator's `pad_to_multiple_of` (tevatron's DataArguments default)
PAD_TO_MULTIPLE_OF = 16
#: pyserini impact weights: `np.rint(value * 100).astype(int)`
PYSERINI_SCALE = 100


class RepsGraphs(Protocol):
    """What `represent` runs: models/llm/runtime.py::LlmGraphs on any engine."""

    def encode(
        self, input_ids: np.ndarray, attention_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class EncodedText:
    """One text's token sequence."""

    ids: list[int]  # prefix + (truncated) text + suffix
    text_tokens: int  # the text's tokens before truncation
    truncated: bool  # text_tokens > max_len: only the first max_len were read


@dataclass(frozen=True)
class Representation:
    """PromptReps representations of one text."""

    dense: np.ndarray  # [H] float32, L2-normalised
    indices: np.ndarray  # [n] int64 vocabulary ids, by weight descending
    values: np.ndarray  # [n] float32 log1p(relu(logit)) weights (quantize() for pyserini)
    tokens: int  # length of the sequence the model read
    text_tokens: int  # the text's tokens before truncation
    truncated: bool


def passage_text(text: str, title: str | None = None) -> str:
    """A passage as the official dataset formats it: `f"{title} {text}".strip()`."""
    return f"{title or ''} {text}".strip()


def prompt_ids(
    tokenizer: LlmTokenizer, manifest: LlmArtifactManifest, side: Side
) -> tuple[list[int], list[int]]:
    """(prefix ids, suffix ids) of one side's prompt, each tokenized on its own.

    An empty prompt side is refused: the representation is read after the last token, and
    an empty text with an empty prompt would leave no token at all."""
    prefix, suffix = manifest.prompt(side)
    prefix_ids, suffix_ids = tokenizer.encode(prefix), tokenizer.encode(suffix)
    if not prefix_ids and not suffix_ids:
        raise ArtifactError(f"the {side} prompt has no tokens (prefix and suffix both empty)")
    return prefix_ids, suffix_ids


def encode_texts(
    tokenizer: LlmTokenizer,
    prefix_ids: Sequence[int],
    suffix_ids: Sequence[int],
    texts: Sequence[str],
    max_len: int,
) -> list[EncodedText]:
    """Each text's sequence: prefix + its first `max_len` tokens + suffix. Texts are stripped
    first, as the official dataset does for queries and (title + text) passages; only the text
    is truncated (`tokenizer(texts, truncation=True, max_length=max_len,
    add_special_tokens=False)`, which keeps the first tokens)."""
    if max_len < 1:
        raise ValueError(f"max_len must be positive, got {max_len}")
    pre, suf = list(prefix_ids), list(suffix_ids)
    out = []
    for ids in tokenizer.encode_batch([t.strip() for t in texts]):
        out.append(EncodedText(pre + ids[:max_len] + suf, len(ids), len(ids) > max_len))
    return out


def collate(
    seqs: Sequence[Sequence[int]], pad_id: int, multiple: int | None = PAD_TO_MULTIPLE_OF
) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask), int64 [B, T]: right-padded with `pad_id` to the longest
    sequence rounded up to a multiple of `multiple` (None or 1: no rounding), as
    `tokenizer.pad(padding=True, pad_to_multiple_of=multiple)` does."""
    if not seqs:
        raise ValueError("collate needs at least one sequence")
    lengths = [len(s) for s in seqs]
    if min(lengths) == 0:
        raise ValueError("cannot collate an empty sequence")
    width = max(lengths)
    if multiple and width % multiple:
        width = (width // multiple + 1) * multiple
    input_ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(seqs), width), dtype=np.int64)
    for row, seq in enumerate(seqs):
        input_ids[row, : len(seq)] = seq
        attention_mask[row, : len(seq)] = 1
    return input_ids, attention_mask


def term_ids(tokenizer: LlmTokenizer, text: str) -> np.ndarray:
    """The sparse representation's candidate ids: every id of every content word of the text
    (models/llm/words.py::content_words), each word encoded on its own; sorted, unique,
    int64."""
    words = list(dict.fromkeys(content_words(text)))
    ids: set[int] = set()
    for word_ids in tokenizer.encode_words(words):
        ids.update(word_ids)
    return np.array(sorted(ids), dtype=np.int64)


def _top(row: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k candidates with the largest row values, by value descending; equal values by id
    ascending (torch.topk leaves their order, and which of them make the cut, unspecified)."""
    values = row[candidates]
    if k < len(candidates):
        # everything at or above the k-th largest value, then an exact sort of those few
        kth = np.partition(values, len(values) - k)[len(values) - k]
        keep = values >= kth
        candidates, values = candidates[keep], values[keep]
    order = np.lexsort((candidates, -values))[:k]
    return candidates[order], values[order]


def select_sparse(
    sparse_row: np.ndarray,
    ids: np.ndarray,
    top_k: int,
    *,
    expansion_ids: np.ndarray | None = None,
    expansion_k: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(indices int64, values float32) of one text's sparse representation.

    `ids` are the text's term ids (`term_ids`): the top `min(len(ids), top_k)` of them by
    weight; with no ids, the top `FALLBACK_TOP_K` of the whole row. Zero weights are kept as
    the official code keeps them (they score nothing). `expansion_k > 0` appends the top
    `expansion_k` of `expansion_ids` not among `ids` (`--num_expended_tokens`; candidates from
    `LlmTokenizer.expansion_ids()`), after the text's own terms as the official vector lists
    them; an id already selected is not repeated."""
    row = np.asarray(sparse_row, dtype=np.float32).reshape(-1)
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(ids):
        indices, values = _top(row, ids, min(len(ids), top_k))
    else:
        everything = np.arange(len(row), dtype=np.int64)
        indices, values = _top(row, everything, min(FALLBACK_TOP_K, len(row)))
    if expansion_k > 0 and expansion_ids is not None:
        outside = np.setdiff1d(np.asarray(expansion_ids, dtype=np.int64), ids)
        outside = outside[outside < len(row)]
        extra_idx, extra_val = _top(row, outside, min(expansion_k, len(outside)))
        fresh = ~np.isin(extra_idx, indices)
        indices = np.concatenate([indices, extra_idx[fresh]])
        values = np.concatenate([values, extra_val[fresh]])
    return indices.astype(np.int64), values.astype(np.float32)


def sparse_terms(
    tokenizer: LlmTokenizer, params: PromptRepsParams, sparse_row: np.ndarray, text: str
) -> tuple[np.ndarray, np.ndarray]:
    """One text's sparse representation from its graph row, with the prompt's settings: the
    text's own term ids, top-k, and the expansion terms if the prompt asks for them. The one
    place both `represent` and the serving encoder select terms."""
    expansion = tokenizer.expansion_ids() if params.num_expanded_tokens else None
    return select_sparse(
        sparse_row,
        term_ids(tokenizer, text),
        params.top_k,
        expansion_ids=expansion,
        expansion_k=params.num_expanded_tokens,
    )


def quantize(values: np.ndarray, scale: int = PYSERINI_SCALE) -> np.ndarray:
    """Integer impact weights for pyserini: `np.rint(values * 100).astype(int)` on float32
    values, as `encode.py::get_valid_tokens_values` writes them (int64)."""
    return np.rint(np.asarray(values, dtype=np.float32) * np.float32(scale)).astype(np.int64)


def represent(
    graphs: RepsGraphs,
    tokenizer: LlmTokenizer,
    manifest: LlmArtifactManifest,
    texts: Sequence[str],
    side: Side,
    *,
    pad_id: int = 0,
    multiple: int | None = PAD_TO_MULTIPLE_OF,
) -> list[Representation]:
    """Dense and sparse representations of `texts` (queries or formatted passages, see
    `passage_text`) in ONE forward pass of `graphs`.

    `pad_id` fills the padding; with right padding and a causal model nothing reads it, so
    outputs do not depend on it (the bundle's `pad_token_id` is what the encoder uses)."""
    if not texts:
        return []
    params = manifest.params
    prefix, suffix = prompt_ids(tokenizer, manifest, side)
    encoded = encode_texts(tokenizer, prefix, suffix, texts, params.max_len(side))
    input_ids, attention_mask = collate([e.ids for e in encoded], pad_id, multiple)
    dense, sparse = graphs.encode(input_ids, attention_mask)
    out = []
    for row, (text, e) in enumerate(zip(texts, encoded, strict=True)):
        indices, values = sparse_terms(tokenizer, params, sparse[row], text)
        out.append(
            Representation(
                dense=np.asarray(dense[row], dtype=np.float32),
                indices=indices,
                values=values,
                tokens=len(e.ids),
                text_tokens=e.text_tokens,
                truncated=e.truncated,
            )
        )
    return out
