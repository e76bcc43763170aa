"""`cocoop`: conditional context (Zhou et al., CVPR 2022).

Follows KaiyangZhou/CoOp `trainers/cocoop.py`: a meta-net (Linear E→E/16, ReLU, Linear E/16→D)
maps each L2-normalised image feature to a bias added to every context vector; the prompts
`[SOS][ctx + bias][name].[EOS]` (class token at the end) then run through the text encoder for
every class, per image, and logits are `logit_scale * image_feature · text_featuresᵀ`.

Nothing image-independent is left to precompute except the prefix/suffix token embeddings, so
the head encodes B × n_cls sequences per batch, in groups bounded by `max_sequences` (not a
Python loop per image).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from promptserve.models.artifacts import ArtifactError, PromptArtifact
from promptserve.models.clip.bundle import ClipBundleConfig
from promptserve.models.clip.methods.base import ClassHead, PromptMethod, clip_manifest
from promptserve.models.clip.methods.coop import build_prompts
from promptserve.models.clip.text import TextTower, l2_normalize

META_KEYS = (
    "meta_net.linear1.weight",
    "meta_net.linear1.bias",
    "meta_net.linear2.weight",
    "meta_net.linear2.bias",
)


class CoCoOpParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    n_ctx: int = Field(ge=1, description="Number of learned context tokens.")


@dataclass(frozen=True)
class CoCoOpHead(ClassHead):
    ctx: np.ndarray = None  # type: ignore[assignment]  # [n_ctx, D]
    prefix: np.ndarray = None  # type: ignore[assignment]  # [n_cls, 1, D]
    suffix: np.ndarray = None  # type: ignore[assignment]  # [n_cls, L - 1 - n_ctx, D]
    eot: np.ndarray = None  # type: ignore[assignment]  # [n_cls]
    meta: tuple[np.ndarray, ...] = ()  # W1, b1, W2, b2 (float32)
    tower: TextTower | None = None
    max_sequences: int = 1024
    dynamic = True

    def logits(self, image_embeds: np.ndarray, logit_scale: float) -> np.ndarray:
        tower = self.tower
        if tower is None:
            raise ValueError("a CoCoOp head needs the text tower (CoCoOpMethod.make_head sets it)")
        imf = l2_normalize(image_embeds.astype(np.float32))
        w1, b1, w2, b2 = self.meta
        bias = np.maximum(imf @ w1.T + b1, 0.0) @ w2.T + b2  # meta_net: [B, D]
        n_cls, out = len(self.labels), np.empty((len(imf), len(self.labels)), np.float32)
        step = max(1, self.max_sequences // n_cls)
        for start in range(0, len(imf), step):
            ctx = self.ctx[None] + bias[start : start + step, None]  # [g, n_ctx, D]
            g = len(ctx)
            seqs = np.concatenate(
                [
                    np.broadcast_to(self.prefix[None], (g, *self.prefix.shape)),
                    np.broadcast_to(ctx[:, None], (g, n_cls, *ctx.shape[1:])),
                    np.broadcast_to(self.suffix[None], (g, *self.suffix.shape)),
                ],
                axis=2,
            ).reshape(g * n_cls, -1, self.ctx.shape[-1])
            text = l2_normalize(tower.encode(seqs, np.tile(self.eot, g))).reshape(g, n_cls, -1)
            out[start : start + g] = np.einsum("be,bce->bc", imf[start : start + g], text)
        return logit_scale * out


class CoCoOpMethod(PromptMethod):
    name = "cocoop"
    params_model = CoCoOpParams

    @classmethod
    def validate(cls, artifact: PromptArtifact, bundle: ClipBundleConfig) -> None:
        text_width, embed_dim = bundle.text_width, bundle.embed_dim
        p: CoCoOpParams = cls.params(artifact)
        t = artifact.tensors
        missing = [k for k in ("ctx", *META_KEYS) if k not in t]
        if missing:
            raise ArtifactError(f"cocoop artifact lacks tensors {missing}")
        if tuple(t["ctx"].shape) != (p.n_ctx, text_width):
            raise ArtifactError(
                f"cocoop `ctx` must be ({p.n_ctx}, {text_width}); got {tuple(t['ctx'].shape)}"
            )
        hidden, vis = t["meta_net.linear1.weight"].shape
        expected = {
            "meta_net.linear1.bias": (hidden,),
            "meta_net.linear2.weight": (text_width, hidden),
            "meta_net.linear2.bias": (text_width,),
        }
        wrong = {
            k: tuple(t[k].shape) for k, shape in expected.items() if tuple(t[k].shape) != shape
        }
        if wrong or (embed_dim is not None and vis != embed_dim):
            raise ArtifactError(
                f"cocoop meta-net does not fit this backbone (embed dim {embed_dim}, text width "
                f"{text_width}): linear1 is {hidden}x{vis}, mismatched {wrong}"
            )

    @classmethod
    def class_features(cls, artifact: PromptArtifact, tower: TextTower) -> np.ndarray:
        return np.zeros((0, 0), np.float32)  # image-dependent: nothing to precompute

    @classmethod
    def make_head(
        cls, artifact: PromptArtifact, features: np.ndarray, tower: TextTower
    ) -> ClassHead:
        t = {k: v.astype(np.float32) for k, v in artifact.tensors.items()}
        ctx = t["ctx"]
        names = clip_manifest(artifact).classnames
        # The prompt construction of CoOp's "end" position with a zero context gives prefix and
        # suffix; the context slots are filled per image.
        prompts, eot = build_prompts(tower, np.zeros_like(ctx), names, "end")
        n_ctx = ctx.shape[0]
        return CoCoOpHead(
            labels=tuple(names),
            features=features,
            ctx=ctx,
            prefix=prompts[:, :1],
            suffix=prompts[:, 1 + n_ctx :],
            eot=eot,
            meta=tuple(t[k] for k in META_KEYS),
            tower=tower,
        )
