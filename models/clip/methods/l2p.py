"""`l2p`: Learning to Prompt (Wang et al., CVPR 2022) served on CLIP's zero-shot head.

A pool of M prompts, each with a learned key. Per image (per row, not per request):
1. query = the frozen, un-prompted CLIP image feature (the plain vision graph's output);
2. cosine similarity of the query with the L2-normalised keys, top-N prompts (`top_n`, the
   official `top_k`), best first;
3. the N chosen prompts' tokens (N*Lp tokens) enter the prompted vision graph as layer-0 visual
   prompt tokens (the shallow slots IVLP/MaPLe use); the prompted image feature is matched
   against the class features as CLIP does (template ensemble of the class names).
Two vision passes per image; in the second, rows that chose different prompts share one call
(each row carries its own prompt tokens, see models/clip/deep_prompts.py::VisualPromptBatch).

Selection follows JH-LEE-KR/l2p-pytorch `prompt.py::Prompt.forward` (commit 009146a) with
`embedding_key='cls'` (the query is the frozen model's feature, `cls_features`),
`prompt_pool=True`, `prompt_key=True`: `l2_normalize` = x * rsqrt(max(sum x², 1e-12)),
`similarity = x_norm @ key_norm.T`, `torch.topk(similarity, k=top_k)` (descending), prompts
gathered in that order and flattened to [top_k * length, C]. google-research/l2p (JAX) is the
same computation.

Deviations from l2p-pytorch (whose backbone is a fine-tuned timm ViT classifier):
- `batchwise_prompt` is off: the official option replaces every row's choice by the batch's
  most frequent prompts, which in a served batch would let one user's images change another
  user's result (and make a result depend on what it was batched with).
- Prompt positions: l2p prepends the prompts after the class token and adds *learned* position
  embeddings for them (`pos_embed` sized for the prompts). CLIP has no position embeddings for
  extra tokens; the prompted graph appends them after the patches, after CLIP's position
  embedding and before `ln_pre` (as VPT/IVLP do). Attention without a causal mask does not
  depend on token order, so the position of the prompts changes nothing; the missing learned
  position embeddings do (a checkpoint trained with them runs without them).
- Query: l2p's is the frozen ViT's `pre_logits` (class token after the final norm, width C =
  the prompt width); ours is CLIP's projected image feature, so keys are [M, E] (embed dim).
- Head: l2p classifies with a trained linear head on the mean of the prompt tokens' outputs
  (`head_type='prompt'`); we read CLIP's class token through `ln_post` and `proj` and classify
  zero-shot against text features, so the open vocabulary of CLIP is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from promptserve.models.artifacts import ArtifactError, PromptArtifact
from promptserve.models.clip.bundle import ClipBundleConfig
from promptserve.models.clip.deep_prompts import DeepPrompts
from promptserve.models.clip.methods.base import (
    ClassHead,
    PromptMethod,
    clip_manifest,
    prompted_slots,
)
from promptserve.models.clip.methods.templates import TemplatesMethod
from promptserve.models.clip.templates import resolve_templates
from promptserve.models.clip.text import TextTower

#: distinct prompt combinations a head keeps built (each is N*Lp*W floats)
_MAX_CACHED_COMBINATIONS = 4096


class L2PParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    top_n: int = Field(ge=1, description="Prompts chosen per image (l2p's `top_k`).")


def l2p_normalize(x: np.ndarray) -> np.ndarray:
    """l2p-pytorch `Prompt.l2_normalize`: x * rsqrt(max(sum x², 1e-12)) over the last axis."""
    x = np.asarray(x, np.float32)
    return x / np.sqrt(np.maximum((x * x).sum(axis=-1, keepdims=True), 1e-12))


@dataclass(frozen=True)
class PoolRouting:
    """Each image's choice and the vision jobs it makes: rows with the same choice share one
    prompt-token block (and one job); different blocks still share the graph call."""

    index: np.ndarray  # [B, N] chosen pool entries, best first
    score: np.ndarray  # [B, N] cosine similarity with each chosen key
    groups: list[tuple[DeepPrompts, np.ndarray]]  # (prompt tokens, row indices)


@dataclass(frozen=True)
class L2PHead(ClassHead):
    """Class features from the templates plus the pool; `route` runs between the two passes."""

    keys: np.ndarray = None  # type: ignore[assignment]  # [M, E] L2-normalised
    prompts: np.ndarray = None  # type: ignore[assignment]  # [M, Lp, W] float32
    top_n: int = 1
    _built: dict[tuple[int, ...], DeepPrompts] = field(default_factory=dict, compare=False)

    def select(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[B, E] un-prompted image features -> chosen indices [B, N] and similarities [B, N],
        most similar first (ties: lower index first)."""
        sim = l2p_normalize(query) @ self.keys.T
        index = np.argsort(-sim, axis=1, kind="stable")[:, : self.top_n]
        return index, np.take_along_axis(sim, index, axis=1)

    def prompt_tokens(self, choice: tuple[int, ...]) -> DeepPrompts:
        """The chosen prompts concatenated in choice order: one layer of N*Lp tokens."""
        built = self._built.get(choice)
        if built is None:
            if len(self._built) >= _MAX_CACHED_COMBINATIONS:
                self._built.clear()
            tokens = self.prompts[list(choice)].reshape(1, -1, self.prompts.shape[-1])
            built = self._built[choice] = DeepPrompts(np.ascontiguousarray(tokens))
        return built

    def route(self, query: np.ndarray) -> PoolRouting:
        index, score = self.select(query)
        rows: dict[tuple[int, ...], list[int]] = {}
        for i, choice in enumerate(map(tuple, index.tolist())):
            rows.setdefault(choice, []).append(i)
        groups = [(self.prompt_tokens(c), np.asarray(r, np.int64)) for c, r in rows.items()]
        return PoolRouting(index, score, groups)


class L2PMethod(PromptMethod):
    """Tensors: `prompt_key` [M, E], `prompt` [M, Lp, W]; class texts from the manifest's
    templates (default CLIP's "a photo of a {}."), hparams `top_n`."""

    name = "l2p"
    graphs: ClassVar[tuple[str, ...]] = ("vision", "vision_prompted", "text")
    params_model: ClassVar[type[BaseModel]] = L2PParams

    @classmethod
    def validate(cls, artifact: PromptArtifact, bundle: ClipBundleConfig) -> None:
        p: L2PParams = cls.params(artifact)
        try:
            resolve_templates(clip_manifest(artifact).templates or None)
        except ValueError as exc:
            raise ArtifactError(str(exc)) from exc
        slots = prompted_slots(bundle, cls.name)
        t = artifact.tensors
        if "prompt_key" not in t or "prompt" not in t:
            raise ArtifactError("l2p artifact needs tensors `prompt_key` and `prompt`")
        key, prompt = t["prompt_key"], t["prompt"]
        if key.ndim != 2 or prompt.ndim != 3 or key.shape[0] != prompt.shape[0]:
            raise ArtifactError(
                f"l2p needs `prompt_key` [M, E] and `prompt` [M, Lp, W] with the same M; got "
                f"{tuple(key.shape)} and {tuple(prompt.shape)}"
            )
        if key.shape[1] != bundle.embed_dim:
            raise ArtifactError(
                f"l2p keys are {key.shape[1]} wide; this backbone's image features (the query) "
                f"are {bundle.embed_dim} wide"
            )
        if prompt.shape[2] != slots.vision_width:
            raise ArtifactError(
                f"l2p prompts are {prompt.shape[2]} wide; this backbone's vision tower is "
                f"{slots.vision_width} wide"
            )
        if p.top_n > key.shape[0]:
            raise ArtifactError(f"l2p top_n={p.top_n} exceeds the pool of {key.shape[0]}")
        if p.top_n * prompt.shape[1] > slots.max_tokens:
            raise ArtifactError(
                f"l2p injects top_n*length = {p.top_n * prompt.shape[1]} prompt tokens; the "
                f"bundle takes at most {slots.max_tokens} (export --max-prompt-tokens)"
            )

    @classmethod
    def class_features(cls, artifact: PromptArtifact, tower: TextTower) -> np.ndarray:
        return TemplatesMethod.class_features(artifact, tower)

    @classmethod
    def make_head(
        cls, artifact: PromptArtifact, features: np.ndarray, tower: TextTower
    ) -> ClassHead:
        p: L2PParams = cls.params(artifact)
        return L2PHead(
            tuple(clip_manifest(artifact).classnames),
            features,
            keys=l2p_normalize(artifact.tensors["prompt_key"]),
            prompts=np.asarray(artifact.tensors["prompt"], np.float32),
            top_n=p.top_n,
        )
