"""`anomalyclip` (Zhou et al., ICLR 2024): object-agnostic learned prompts for zero-shot anomaly
detection, computed as zqhang/AnomalyCLIP computes them.

- Text (`prompt_ensemble.py::AnomalyCLIP_PromptLearner`): "X x n_ctx object." and "X x n_ctx
  damaged object." with learned contexts `ctx_pos` / `ctx_neg` spliced after SOS, and text-side
  deep prompts (`compound_prompts_text`, `t_n_ctx` tokens) replacing positions 1..t_n_ctx at
  layers 1..depth-1 (`AnomalyCLIP.py::ResidualAttentionBlock_learnable_token`, `.half()` cast).
  Both sentences are encoded once, at registration: `[normal, anomalous]` features, normalised.
- Vision: `models/clip/dense_graphs.py::AnomalyCLIPVisionGraph` (DPAM, taps 6/12/18/24).
- Scores (`test.py`): image score = softmax(image · T / 0.07)[anomalous], with the official
  class token taken without `ln_post`; per tap softmax(patch · T / 0.07), anomaly map
  (p_anomalous + 1 - p_normal) / 2 upsampled bilinearly to the input size, summed over taps,
  Gaussian blur σ=4. The sum is taken before upsampling: both are linear and bilinear weights
  sum to one, so this is the same map at 1/taps of the upsampling work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from promptserve.models.artifacts import ArtifactError, PromptArtifact
from promptserve.models.clip.bundle import AnomalyGraphSpec, ClipBundleConfig
from promptserve.models.clip.deep_prompts import DeepPrompts, fp16_round
from promptserve.models.clip.maps import gaussian_blur, resize_bilinear
from promptserve.models.clip.methods.base import (
    ClassHead,
    DenseHead,
    PromptMethod,
    prompted_slots,
)
from promptserve.models.clip.methods.coop import prompt_ids
from promptserve.models.clip.text import TextTower, l2_normalize

TEMPERATURE = 0.07
STATES = ("object", "damaged object")  # state_normal_list / state_anomaly_list on "object"


class AnomalyCLIPParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    taps: tuple[int, ...] = Field((6, 12, 18, 24), description="1-based layers (features_list).")
    dpam_layer: int = Field(20, ge=1, description="DAPM_replace(DPAM_layer): last N-1 blocks.")
    image_size: int = Field(518, ge=1, description="Input size the map is computed at.")
    sigma: float = Field(4.0, ge=0, description="Gaussian blur of the summed map.")


def text_features(artifact: PromptArtifact, tower: TextTower) -> np.ndarray:
    """[2, E] normalised features of the normal and the anomalous prompt."""
    t = artifact.tensors
    try:
        deep = fp16_round(t["compound_prompts_text"])  # [depth - 1, t_n_ctx, D]
        contexts = [
            np.asarray(t[k], np.float32).reshape(-1, deep.shape[-1]) for k in ("ctx_pos", "ctx_neg")
        ]
    except KeyError as exc:
        raise ArtifactError(f"anomalyclip artifact is missing tensor {exc}") from None
    feats = []
    for ctx, state in zip(contexts, STATES, strict=True):
        n_ctx = len(ctx)
        ids = prompt_ids(tower, " ".join(["X"] * n_ctx), [state])
        emb = tower.embed_tokens(ids).copy()
        emb[:, 1 : 1 + n_ctx] = ctx
        # entry 0 restates what the embeddings hold: the deep prompts are t_n_ctx tokens long,
        # the context n_ctx; only positions 1..t_n_ctx are replaced at deeper layers
        first = emb[0, 1 : 1 + deep.shape[1]]
        layers = DeepPrompts(np.concatenate([first[None], deep]))
        feats.append(tower.encode(emb, ids.argmax(axis=-1), layers)[0])
    return l2_normalize(np.stack(feats)).astype(np.float32)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def anomaly_outputs(
    image_embeds: np.ndarray,
    patch_embeds: np.ndarray,
    text: np.ndarray,
    *,
    image_size: int,
    sigma: float,
) -> tuple[np.ndarray, np.ndarray]:
    """image_embeds [B, E], patch_embeds [B, taps, g*g, E], text [2, E] -> image scores [B]
    in [0, 1] and anomaly maps [B, image_size, image_size] (summed over taps, so in
    [0, taps])."""
    scores = _softmax(l2_normalize(image_embeds) @ text.T / TEMPERATURE)[:, 1]
    probs = _softmax(l2_normalize(patch_embeds) @ text.T / TEMPERATURE)  # [B, taps, G, 2]
    per_patch = ((probs[..., 1] + 1 - probs[..., 0]) / 2).sum(axis=1)  # [B, G]
    side = round(per_patch.shape[1] ** 0.5)
    maps = resize_bilinear(per_patch.reshape(-1, side, side), (image_size, image_size))
    return scores.astype(np.float32), gaussian_blur(maps, sigma)


@dataclass(frozen=True)
class AnomalyHead(DenseHead):
    """`features` are the [normal, anomalous] text features; the params say which dense graph
    and which map arithmetic the artifact was trained for."""

    graph: ClassVar[str] = "anomaly"
    params: AnomalyCLIPParams | None = None

    def outputs(self, image_embeds: np.ndarray, dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores [B] and maps [B, S, S] scaled to [0, 1] (the official sum over taps divided
        by their count: a monotone rescaling, so AUROC and PRO are unchanged)."""
        p = self.params or AnomalyCLIPParams()
        scores, maps = anomaly_outputs(
            image_embeds, dense, self.features, image_size=p.image_size, sigma=p.sigma
        )
        return scores, maps / len(p.taps)


class AnomalyCLIPMethod(PromptMethod):
    name = "anomalyclip"
    tasks: ClassVar[frozenset[str]] = frozenset({"anomaly"})
    graphs: ClassVar[tuple[str, ...]] = ("anomaly", "text_prompted")
    params_model: ClassVar[type[BaseModel]] = AnomalyCLIPParams

    @classmethod
    def validate(cls, artifact: PromptArtifact, bundle: ClipBundleConfig) -> None:
        cls.params(artifact)
        text_width, deep_slots = bundle.text_width, prompted_slots(bundle, cls.name)
        t = artifact.tensors
        for key in ("ctx_pos", "ctx_neg", "compound_prompts_text"):
            if key not in t:
                raise ArtifactError(f"anomalyclip artifact is missing tensor {key!r}")
            if t[key].shape[-1] != text_width:
                raise ArtifactError(
                    f"anomalyclip `{key}` is {t[key].shape[-1]} wide; this backbone's text tower "
                    f"is {text_width} wide"
                )
        if len(t["compound_prompts_text"]) + 1 > deep_slots.text_layers:
            raise ArtifactError("anomalyclip has more deep-prompt layers than the text tower")
        _check_anomaly_graph(cls.params(artifact), bundle.anomaly)

    @classmethod
    def class_features(cls, artifact: PromptArtifact, tower: TextTower) -> np.ndarray:
        return text_features(artifact, tower)

    @classmethod
    def make_head(
        cls, artifact: PromptArtifact, features: np.ndarray, tower: TextTower
    ) -> ClassHead:
        return AnomalyHead(("normal", "anomalous"), features, params=cls.params(artifact))


def _check_anomaly_graph(params: AnomalyCLIPParams, spec: AnomalyGraphSpec | None) -> None:
    """An AnomalyCLIP artifact needs the dense graph exported with its size, taps and DPAM."""
    if spec is None:
        raise ArtifactError(
            "this server's bundle has no anomaly graph; export the backbone with "
            f"--anomaly-size {params.image_size}"
        )
    want = (params.image_size, tuple(params.taps), params.dpam_layer)
    have = (spec.image_size, tuple(spec.taps), spec.dpam_layer)
    if want != have:
        raise ArtifactError(
            f"the artifact expects the anomaly graph at (size, taps, dpam_layer) = {want}; the "
            f"bundle's is {have}: re-export with --anomaly-size/--anomaly-taps/--dpam-layer or "
            "re-import the artifact with matching --image-size/--taps/--dpam-layer"
        )
