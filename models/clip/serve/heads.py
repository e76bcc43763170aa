"""CLIP heads: per-prompt class-feature matrices, LRU-cached per replica.

A head is all a request needs beyond the shared image embedding: for precomputed methods the
logits are `logit_scale * normalize(image) @ features.T`, so requests for different prompts share
one vision batch and differ only in this small matmul; image-conditioned methods (CoCoOp) run
their text side per batch instead (`ClassHead.dynamic`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import numpy as np

from promptserve.models.clip.methods import get_method
from promptserve.models.clip.methods.base import ClassHead
from promptserve.models.clip.text import TextTower, template_ensemble
from promptserve.serving.cache import LRU
from promptserve.serving.errors import BackendUnavailable, PromptNotFound
from promptserve.serving.metrics import metrics
from promptserve.serving.store import PromptStore

log = logging.getLogger("promptserve.heads")


class HeadBank:
    """Resolves a request's head: a registered prompt (by content id) or free labels."""

    def __init__(
        self,
        store: PromptStore,
        tower: TextTower,
        *,
        max_loaded: int,
        text_cache_size: int,
        embed_dim: int | None = None,
    ) -> None:
        self.store = store
        self.tower = tower
        self.embed_dim = embed_dim
        self._prompts: LRU[str, ClassHead] = LRU(
            max_loaded, lambda: metrics().artifact_evictions.inc()
        )
        self._labels: LRU[tuple[tuple[str, ...], str], np.ndarray] = LRU(max(text_cache_size, 1))
        self._objects: LRU[str, ClassHead] = LRU(max_loaded)
        self._text_lock = threading.Lock()

    def prompt_head(self, prompt_id: str, content_id: str) -> ClassHead:
        head = self._prompts.get(content_id)
        if head is None:
            try:
                artifact, features = self.store.load(prompt_id, content_id)
                # (dynamic methods, e.g. CoCoOp, store no features: an empty array)
                width = features.shape[-1] if features.ndim == 2 else -1
                if features.size and width != (self.embed_dim or width):
                    raise ValueError(
                        f"stored features are {features.shape}, not [classes, {self.embed_dim}]"
                    )
                head = get_method(artifact.manifest.method).make_head(
                    artifact, features, self.tower
                )
            except PromptNotFound:  # deleted, replaced or quarantined by the store: it said so
                raise
            except Exception as exc:  # e.g. features that do not fit this method's head
                metrics().artifact_load_failures.inc()
                log.exception("prompt %s could not be loaded", prompt_id)
                raise BackendUnavailable(
                    f"prompt {prompt_id!r} could not be loaded in this replica "
                    f"({type(exc).__name__}); see the server log, or register it again"
                ) from None
            self._prompts.put(content_id, head)
            metrics().artifact_loads.inc()
        return head

    def object_head(self, object_name: str, build: Callable[[str], ClassHead]) -> ClassHead:
        """A head built from an object name alone (WinCLIP's prompt ensemble), cached by name:
        its text is encoded once per replica, then requests cost only their images."""
        head = self._objects.get(object_name)
        if head is None:
            metrics().text_cache_misses.inc()
            with self._text_lock:
                head = build(object_name)
            self._objects.put(object_name, head)
        else:
            metrics().text_cache_hits.inc()
        return head

    def cached_object(self, object_name: str) -> ClassHead | None:
        head = self._objects.get(object_name)
        if head is not None:
            metrics().text_cache_hits.inc()
        return head

    def cached(
        self, *, content_id: str | None, labels: Sequence[str] | None, templates: tuple[str, ...]
    ) -> ClassHead | None:
        """The head if it needs no I/O and no text encoding (the common case), else None."""
        if labels is None:
            return self._prompts.get(content_id or "")
        rows = [self._labels.get((templates, label)) for label in labels]
        if any(row is None for row in rows):
            return None
        metrics().text_cache_hits.inc(len(rows))
        return ClassHead(tuple(labels), np.stack(rows))  # type: ignore[arg-type]

    def label_head(self, labels: Sequence[str], templates: tuple[str, ...]) -> ClassHead:
        """Template-ensemble features per label, computing only labels not in the cache."""
        rows: list[np.ndarray | None] = [self._labels.get((templates, label)) for label in labels]
        missing = sorted({label for label, row in zip(labels, rows, strict=True) if row is None})
        if hits := len(labels) - sum(row is None for row in rows):
            metrics().text_cache_hits.inc(hits)
        if missing:
            metrics().text_cache_misses.inc(len(missing))
            with self._text_lock:  # one text-encoder job at a time per replica
                feats = template_ensemble(self.tower, missing, templates)
            computed = dict(zip(missing, feats, strict=True))
            for label, feat in computed.items():
                self._labels.put((templates, label), feat)
            rows = [
                row if row is not None else computed[label]
                for label, row in zip(labels, rows, strict=True)
            ]
        return ClassHead(tuple(labels), np.stack(rows))  # type: ignore[arg-type]


def score(
    image_embeds: np.ndarray,
    head: ClassHead,
    *,
    logit_scale: float,
    top_k: int,
    return_logits: bool,
) -> list[dict]:
    """Per image: top-k labels with softmax scores (and all logits on request)."""
    logits = head.logits(image_embeds, logit_scale)
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    k = min(top_k, logits.shape[1])
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return [
        {
            "index": i,
            "top": [
                {
                    "label": head.labels[j],
                    "index": int(j),
                    "score": float(probs[i, j]),
                    "logit": float(logits[i, j]),
                }
                for j in order[i]
            ],
            "logits": logits[i].tolist() if return_logits else None,
        }
        for i in range(len(logits))
    ]
