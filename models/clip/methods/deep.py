"""Deep prompts on both towers: `maple` (Khattak et al., CVPR 2023) and `ivlp` (independent
vision-language prompting, the inference form of PromptSRC, ICCV 2023).

Both give each tower per-layer prompt tokens for layers 0..J-1 (models/clip/deep_prompts.py):
- text: the prompt "<prefix> <name>." has its n_ctx tokens after SOS replaced by the learned
  context at layer 0 and by the deep text prompts at layers 1..J-1;
- vision: prompt tokens are appended after the patch tokens at layer 0 and replaced at 1..J-1.
The class-feature matrix (text side) and the visual prompts are computed once at registration;
a request is one pass of the prompted vision graph plus a matmul, and requests for different
artifacts share that pass.

Official computations followed (muzairkhattak/multimodal-prompt-learning):
- MaPLe, `trainers/maple.py::MultiModalPromptLearner.forward`: visual prompts are projections
  of the text prompts, `proj(ctx)` at layer 0 and `compound_prompt_projections[i]
  (compound_prompts_text[i])` at layer i+1.
- IVLP, `clip/model.py::VisionTransformer` (`VPT`) and `ResidualAttentionBlock_IVLP`
  (`VPT_shallow` per layer), independent on each side; PromptSRC (muzairkhattak/PromptSRC
  `trainers/promptsrc.py`) runs exactly this at inference, with its GPA-averaged weights.
- `clip/model.py` casts every deep prompt with `.half()` before use (the layer-0 text context
  excepted), fp32 models included; we round those through fp16 the same way. In fp16 runs
  MaPLe's `proj` computes in fp16; we compute it in fp32 and round, which can differ from an
  fp16 matmul by one fp16 ulp.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from promptserve.models.artifacts import ArtifactError, PromptArtifact
from promptserve.models.clip.bundle import ClipBundleConfig
from promptserve.models.clip.deep_prompts import DeepPrompts, fp16_round
from promptserve.models.clip.methods.base import (
    ClassHead,
    PromptMethod,
    clip_manifest,
    prompted_slots,
)
from promptserve.models.clip.methods.coop import prompt_ids
from promptserve.models.clip.text import TextTower, l2_normalize


class DeepPromptParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_prefix: str = Field(
        description="Text whose first n_ctx tokens the context replaces: the trainer's CTX_INIT "
        "(e.g. 'a photo of a'), or 'X X ...' when the context was randomly initialised."
    )


def official_prefix(ctx_init: str, n_ctx: int) -> str:
    """The prompt text the MaPLe/IVLP/PromptSRC prompt learners build for a config."""
    if ctx_init and n_ctx <= 4:
        return ctx_init.replace("_", " ")
    return " ".join(["X"] * n_ctx)


class DeepPromptMethod(PromptMethod):
    """Methods whose artifacts become per-layer prompt tokens for both towers."""

    graphs: ClassVar[tuple[str, ...]] = ("vision_prompted", "text_prompted")
    params_model: ClassVar[type[BaseModel]] = DeepPromptParams

    @classmethod
    def text_prompts(cls, artifact: PromptArtifact) -> DeepPrompts:
        raise NotImplementedError

    @classmethod
    def visual_prompts(cls, artifact: PromptArtifact) -> DeepPrompts:
        raise NotImplementedError

    @classmethod
    def validate(cls, artifact: PromptArtifact, bundle: ClipBundleConfig) -> None:
        cls.params(artifact)
        text_width, deep_slots = bundle.text_width, prompted_slots(bundle, cls.name)
        try:
            text, visual = cls.text_prompts(artifact), cls.visual_prompts(artifact)
        except KeyError as exc:
            raise ArtifactError(f"{cls.name} artifact is missing tensor {exc}") from None
        except ValueError as exc:  # shapes that do not fit together
            raise ArtifactError(f"{cls.name} artifact tensors do not fit together: {exc}") from None
        for side, p, layers, width in (
            ("text", text, deep_slots.text_layers, text_width),
            ("vision", visual, deep_slots.vision_layers, deep_slots.vision_width),
        ):
            if p.tokens.shape[-1] != width:
                raise ArtifactError(
                    f"{cls.name} {side} prompts are {p.tokens.shape[-1]} wide; this backbone's "
                    f"{side} tower is {width} wide"
                )
            if not 1 <= p.depth <= layers:
                raise ArtifactError(
                    f"{cls.name} {side} prompt depth {p.depth} is outside 1..{layers} layers"
                )
            if p.n_tokens > deep_slots.max_tokens:
                raise ArtifactError(
                    f"{cls.name} has {p.n_tokens} {side} prompt tokens per layer; the bundle "
                    f"takes at most {deep_slots.max_tokens} (export --max-prompt-tokens)"
                )

    @classmethod
    def class_features(cls, artifact: PromptArtifact, tower: TextTower) -> np.ndarray:
        p: DeepPromptParams = cls.params(artifact)
        ids = prompt_ids(tower, p.prompt_prefix, clip_manifest(artifact).classnames)
        feats = tower.encode(
            tower.embed_tokens(ids), ids.argmax(axis=-1), cls.text_prompts(artifact)
        )
        return l2_normalize(feats).astype(np.float32)

    @classmethod
    def make_head(
        cls, artifact: PromptArtifact, features: np.ndarray, tower: TextTower
    ) -> ClassHead:
        visual = cls.visual_prompts(artifact)
        return ClassHead(tuple(clip_manifest(artifact).classnames), features, visual=visual)


def _f32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


class IVLPMethod(DeepPromptMethod):
    """Tensors: `text_prompts` [J_t, n_t, D] (entry 0 = the prompt learner's `ctx`, entry i =
    text block i's `VPT_shallow`) and `vision_prompts` [J_v, n_v, W] (entry 0 = `VPT`)."""

    name = "ivlp"

    @classmethod
    def text_prompts(cls, artifact: PromptArtifact) -> DeepPrompts:
        t = _f32(artifact.tensors["text_prompts"])
        return DeepPrompts(np.concatenate([t[:1], fp16_round(t[1:])]))

    @classmethod
    def visual_prompts(cls, artifact: PromptArtifact) -> DeepPrompts:
        return DeepPrompts(fp16_round(artifact.tensors["vision_prompts"]))


class MaPLeMethod(DeepPromptMethod):
    """Tensors as the prompt learner holds them: `ctx` [n, D], `compound_prompts_text`
    [J-1, n, D], `proj.weight` [W, D], `proj.bias` [W], `compound_prompt_projections.weight`
    [J-1, W, D] and `.bias` [J-1, W] (the per-layer Linears stacked)."""

    name = "maple"
    TENSORS = (
        "ctx",
        "compound_prompts_text",
        "proj.weight",
        "proj.bias",
        "compound_prompt_projections.weight",
        "compound_prompt_projections.bias",
    )

    @classmethod
    def text_prompts(cls, artifact: PromptArtifact) -> DeepPrompts:
        t = artifact.tensors
        deep = fp16_round(t["compound_prompts_text"])
        return DeepPrompts(np.concatenate([_f32(t["ctx"])[None], deep]))

    @classmethod
    def visual_prompts(cls, artifact: PromptArtifact) -> DeepPrompts:
        t = {k: _f32(artifact.tensors[k]) for k in cls.TENSORS}
        shallow = t["ctx"] @ t["proj.weight"].T + t["proj.bias"]
        deep = (
            np.einsum(
                "lnd,lwd->lnw", t["compound_prompts_text"], t["compound_prompt_projections.weight"]
            )
            + t["compound_prompt_projections.bias"][:, None, :]
        )
        return DeepPrompts(fp16_round(np.concatenate([shallow[None], deep])))
