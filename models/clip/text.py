"""The text side of a bundle as plain numpy: tokenize, look up embeddings, encode.

Prompt methods build token-embedding sequences here (splicing learned context vectors in) and
hand them to whichever engine runs the text graph, so every method is written once for all
engines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from promptserve.models.clip.deep_prompts import DeepPrompts
from promptserve.models.clip.tokenizer import ClipTokenizer

# (token_embeddings, eot_index, deep prompts or None) -> text embeddings
EncodeFn = Callable[[np.ndarray, np.ndarray, "DeepPrompts | None"], np.ndarray]


class TextTower:
    """Tokenizer + token-embedding table + an engine's text-graph call, chunked."""

    def __init__(
        self,
        tokenizer: ClipTokenizer,
        token_embedding: np.ndarray,
        encode_fn: EncodeFn,
        *,
        chunk_size: int = 256,
        truncate: bool = False,
    ) -> None:
        self.tokenizer = tokenizer
        self.token_embedding = token_embedding
        self._encode_fn = encode_fn
        self.chunk_size = chunk_size
        self.truncate = truncate

    def embed_tokens(self, ids: np.ndarray) -> np.ndarray:
        """[N, L] int ids -> [N, L, D] float32 embeddings."""
        return self.token_embedding[ids].astype(np.float32, copy=False)

    def encode(
        self, embeddings: np.ndarray, eot_index: np.ndarray, deep: DeepPrompts | None = None
    ) -> np.ndarray:
        """[N, L, D], [N] -> [N, E], in chunks so long vocabularies stay within memory.

        `deep`: one artifact's text-side deep prompts (MaPLe, IVLP), shared by all sequences.

        With `truncate` (bundles whose text graph allows it), sequences are grouped by length
        and each chunk is cut after its longest EOT: CLIP's text attention is causal, so this is
        the same computation on ~5-8x fewer tokens for typical prompts.
        """
        order = np.argsort(eot_index, kind="stable") if self.truncate else np.arange(len(eot_index))
        parts = []
        for i in range(0, len(order), self.chunk_size):
            idx = order[i : i + self.chunk_size]
            eot = eot_index[idx]
            length = int(eot.max()) + 1 if self.truncate else embeddings.shape[1]
            parts.append(
                self._encode_fn(
                    np.ascontiguousarray(embeddings[idx, :length], dtype=np.float32),
                    np.ascontiguousarray(eot, dtype=np.int64),
                    deep,
                )
            )
        out = np.concatenate(parts, axis=0)
        result = np.empty_like(out)
        result[order] = out
        return result

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Plain strings -> [N, E] unnormalised features (as CLIP's encode_text)."""
        return np.concatenate(list(self.encode_text_chunks(texts)), axis=0)

    def encode_text_chunks(self, texts: Sequence[str]) -> Iterator[np.ndarray]:
        """`encode_texts` a chunk of `chunk_size` strings at a time: tokens and their
        embeddings ([chunk, 77, width] float32) exist for one chunk only, so a request's
        vocabulary (labels x templates, up to `limits.max_text_sequences`) costs memory in
        proportion to the chunk, not to the vocabulary."""
        texts = list(texts)
        for i in range(0, len(texts), self.chunk_size):
            ids = self.tokenizer(texts[i : i + self.chunk_size])
            yield self.encode(self.embed_tokens(ids), ids.argmax(axis=-1))


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return x / np.linalg.norm(x, axis=axis, keepdims=True)


def text_ensemble(tower: TextTower, texts_per_class: Sequence[Sequence[str]]) -> np.ndarray:
    """Per class: L2-normalise each text's embedding, average, re-normalise. Classes may have
    different numbers of texts (CuPL's generated sentences). Returns [n_cls, E]."""
    counts = np.array([len(texts) for texts in texts_per_class])
    if counts.min(initial=1) < 1:
        raise ValueError("every class needs at least one text")
    owner = np.repeat(np.arange(len(counts)), counts)  # the class of each text
    sums: np.ndarray | None = None
    done = 0
    # summed chunk by chunk: never the [texts, E] features of a whole vocabulary at once
    for feats in tower.encode_text_chunks([t for texts in texts_per_class for t in texts]):
        if sums is None:
            sums = np.zeros((len(counts), feats.shape[1]), np.float64)
        np.add.at(sums, owner[done : done + len(feats)], l2_normalize(feats))
        done += len(feats)
    assert sums is not None
    return l2_normalize(sums / counts[:, None]).astype(np.float32)


def template_ensemble(
    tower: TextTower, classnames: Sequence[str], templates: Sequence[str]
) -> np.ndarray:
    """CLIP's zero-shot classifier: per class, L2-normalise each template's embedding, average
    over templates, re-normalise (openai/CLIP `Prompt_Engineering_for_ImageNet.ipynb`,
    open_clip `zero_shot_classifier.py::build_zero_shot_classifier`). Returns [n_cls, E]."""
    return text_ensemble(tower, [[t.format(c) for t in templates] for c in classnames])
