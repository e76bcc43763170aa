"""`winclip` (Jeong et al., CVPR 2023), zero-shot: a compositional prompt ensemble and
multi-scale window scores combined by harmonic means, computed as anomalib's reimplementation
computes them (`models/image/winclip/torch_model.py`, `utils.py`, `prompting.py`).

- Text: every state word x template sentence for the object, encoded; the normal and the
  anomalous embeddings are the *unnormalised* means of their sentences (`collect_text_embeddings`).
- Scores: softmax(cos(embedding, text) / 0.07)[anomalous] for the image and for every window
  (`class_scores`); per scale, each patch gets the harmonic mean of the windows covering it
  (`harmonic_aggregation`); the image score (as a constant map) and the scale maps are combined
  by a harmonic mean (`_compute_zero_shot_scores`) and upsampled bilinearly to the input size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from promptserve.models.clip.bundle import WinCLIPGraphSpec
from promptserve.models.clip.maps import resize_bilinear
from promptserve.models.clip.methods.base import DenseHead
from promptserve.models.clip.text import TextTower, l2_normalize

TEMPERATURE = 0.07
# The compositional prompt ensemble (WinCLIP paper, appendix; anomalib `prompting.py`).
NORMAL_STATES = (
    "{}", "flawless {}", "perfect {}", "unblemished {}", "{} without flaw", "{} without defect",
    "{} without damage",
)  # fmt: skip
ANOMALOUS_STATES = ("damaged {}", "{} with flaw", "{} with defect", "{} with damage")
TEMPLATES = (
    "a cropped photo of the {}.", "a close-up photo of a {}.", "a close-up photo of the {}.",
    "a bright photo of a {}.", "a bright photo of the {}.", "a dark photo of the {}.",
    "a dark photo of a {}.", "a jpeg corrupted photo of the {}.",
    "a jpeg corrupted photo of the {}.", "a blurry photo of the {}.", "a blurry photo of a {}.",
    "a photo of a {}.", "a photo of the {}.", "a photo of a small {}.",
    "a photo of the small {}.", "a photo of a large {}.", "a photo of the large {}.",
    "a photo of the {} for visual inspection.", "a photo of a {} for visual inspection.",
    "a photo of the {} for anomaly detection.", "a photo of a {} for anomaly detection.",
)  # fmt: skip


def prompt_ensemble(object_name: str) -> tuple[list[str], list[str]]:
    def sentences(states: tuple[str, ...]) -> list[str]:
        return [t.format(s.format(object_name)) for s in states for t in TEMPLATES]

    return sentences(NORMAL_STATES), sentences(ANOMALOUS_STATES)


def text_embeddings(tower: TextTower, object_name: str) -> np.ndarray:
    """[2, E]: the mean (not normalised) embedding of the normal and the anomalous sentences."""
    normal, anomalous = prompt_ensemble(object_name)
    feats = tower.encode_texts(normal + anomalous)
    return np.stack([feats[: len(normal)].mean(0), feats[len(normal) :].mean(0)]).astype(np.float32)


def window_indices(grid: int, scale: int) -> np.ndarray:
    """[n_windows, scale*scale] patch indices of every scale x scale window of a grid x grid
    patch map, stride 1: windows in row-major order of their top-left patch, patches row-major
    inside a window (anomalib `winclip/utils.py::make_masks`, transposed)."""
    if not 1 <= scale <= grid:
        raise ValueError(f"a {scale}x{scale} window does not fit a {grid}x{grid} patch grid")
    ids = np.arange(grid * grid).reshape(grid, grid)
    windows = np.lib.stride_tricks.sliding_window_view(ids, (scale, scale))
    return windows.reshape(-1, scale * scale).copy()  # a writable array, not a view


def anomalous_probability(embeds: np.ndarray, text: np.ndarray) -> np.ndarray:
    logits = l2_normalize(embeds) @ l2_normalize(text).T / TEMPERATURE
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True))[..., 1]


def harmonic_aggregation(scores: np.ndarray, windows: np.ndarray, grid: int) -> np.ndarray:
    """scores [B, n_windows], windows [n_windows, k*k] patch indices -> [B, grid, grid]: per
    patch, the harmonic mean of the scores of the windows covering it (0 where a score is 0)."""
    b = scores.shape[0]
    with np.errstate(divide="ignore"):
        inverse = 1.0 / scores.astype(np.float64)
    sums = np.zeros((b, grid * grid))
    counts = np.zeros(grid * grid)
    for j in range(windows.shape[1]):  # each position inside a window
        # numpy's stubs take only integer arrays as `indices`; a tuple of them is documented
        np.add.at(sums, (slice(None), windows[:, j]), inverse)  # type: ignore[arg-type]
        np.add.at(counts, windows[:, j], 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = counts / sums
    return np.nan_to_num(out, nan=0.0, posinf=0.0).reshape(b, grid, grid)


def winclip_outputs(
    image_embeds: np.ndarray,
    window_embeds: np.ndarray,
    text: np.ndarray,
    *,
    windows: list[np.ndarray],
    grid: int,
    image_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """image_embeds [B, E], window_embeds [B, all windows, E] (scales concatenated in the order
    of `windows`) -> image scores [B] and maps [B, image_size, image_size]."""
    image_scores = anomalous_probability(image_embeds, text)
    maps = [np.broadcast_to(image_scores[:, None, None], (len(image_scores), grid, grid))]
    start = 0
    for w in windows:
        part = window_embeds[:, start : start + len(w)]
        maps.append(harmonic_aggregation(anomalous_probability(part, text), w, grid))
        start += len(w)
    with np.errstate(divide="ignore"):
        combined = len(maps) / (1.0 / np.stack(maps).astype(np.float64)).sum(axis=0)
    return image_scores.astype(np.float32), resize_bilinear(
        combined.astype(np.float32), (image_size, image_size)
    )


@dataclass(frozen=True, eq=False)
class WinCLIPHead(DenseHead):
    """WinCLIP for one object name: `features` are its [normal, anomalous] ensemble
    embeddings; the spec says which windows the bundle's `winclip` graph encodes."""

    graph: ClassVar[str] = "winclip"
    spec: WinCLIPGraphSpec = field(kw_only=True)
    image_size: int = field(kw_only=True)

    @classmethod
    def build(
        cls, tower: TextTower, object_name: str, spec: WinCLIPGraphSpec, image_size: int
    ) -> WinCLIPHead:
        features = text_embeddings(tower, object_name)
        return cls(("normal", "anomalous"), features, spec=spec, image_size=image_size)

    def outputs(self, image_embeds: np.ndarray, dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        spec = self.spec
        windows = [window_indices(spec.grid, s) for s in spec.scales]
        return winclip_outputs(
            image_embeds,
            dense,
            self.features,
            windows=windows,
            grid=spec.grid,
            image_size=self.image_size,
        )
