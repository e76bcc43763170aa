"""What a CLIP gateway sends its encoder: pixels plus a typed reference to the head that
scores them — a registered prompt (`PromptRef`, resolved and checked by the gateway) or free
text the encoder turns into features (and caches)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from promptserve.serving.store import PromptRef


@dataclass(frozen=True)
class Labels:
    """Free class names under a template ensemble (zero-shot classification)."""

    labels: tuple[str, ...]
    templates: tuple[str, ...]


@dataclass(frozen=True)
class ObjectName:
    """WinCLIP's zero-shot anomaly head: its prompt ensemble over one object name."""

    name: str


@dataclass(frozen=True)
class Vocabulary:
    """Segmentation classes, each with one or more names, under a template ensemble."""

    names: tuple[tuple[str, ...], ...]
    templates: tuple[str, ...]


@dataclass(frozen=True)
class ClassifyCall:
    crops: np.ndarray  # uint8 [n, S, S, 3], already resized and center-cropped
    head: PromptRef | Labels
    top_k: int = 5
    return_logits: bool = False


@dataclass(frozen=True)
class AnomalyCall:
    crops: np.ndarray  # uint8 [n, S, S, 3] at its dense graph's size, aspect not kept
    sizes: tuple[tuple[int, int], ...]  # each map's (height, width): original, or max_map_side
    head: PromptRef | ObjectName


@dataclass(frozen=True)
class SegmentCall:
    """One image of a segmentation request, cut into its sliding windows."""

    windows: np.ndarray  # uint8 [n, crop, crop, 3]
    boxes: tuple[tuple[int, int, int, int], ...]  # (y1, y2, x1, x2) of each in the resized image
    resized: tuple[int, int]
    original: tuple[int, int]
    method: str
    logit_scale: float
    vocabulary: PromptRef | Vocabulary
    prob_threshold: float = 0.0
    return_scores: bool = False
