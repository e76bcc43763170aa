"""`coop`: learned context vectors (Zhou et al., IJCV 2022).

Prompts are built exactly as KaiyangZhou/CoOp `trainers/coop.py::PromptLearner` builds them:
the text "X X ... X <name>." is tokenized, embedded, and the n_ctx embeddings after SOS are
replaced by the context (shared [n_ctx, D] or class-specific [n_cls, n_ctx, D]); the class name
goes at the `end`, `middle` (between the two context halves) or `front`; features are taken at
the EOT position. The prefix/suffix embeddings in official checkpoints are ignored and rebuilt
from the given class names, as CoOp's `load_model` does.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from promptserve.models.artifacts import ArtifactError, PromptArtifact
from promptserve.models.clip.bundle import ClipBundleConfig
from promptserve.models.clip.methods.base import PromptMethod, clip_manifest
from promptserve.models.clip.text import TextTower, l2_normalize


class CoOpParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    n_ctx: int = Field(ge=1, description="Number of learned context tokens.")
    csc: bool = Field(False, description="Class-specific context (one context per class).")
    class_token_position: Literal["end", "middle", "front"] = "end"


class CoOpMethod(PromptMethod):
    name = "coop"
    tasks: ClassVar[frozenset[str]] = frozenset({"classify", "segment"})  # text-only prompts
    params_model = CoOpParams

    @classmethod
    def validate(cls, artifact: PromptArtifact, bundle: ClipBundleConfig) -> None:
        text_width = bundle.text_width
        p: CoOpParams = cls.params(artifact)
        ctx = artifact.tensors.get("ctx")
        n_cls = len(clip_manifest(artifact).classnames)
        expected = (n_cls, p.n_ctx, text_width) if p.csc else (p.n_ctx, text_width)
        if ctx is None or tuple(ctx.shape) != expected:
            got = None if ctx is None else tuple(ctx.shape)
            raise ArtifactError(
                f"coop artifact needs tensor `ctx` of shape {expected} for {n_cls} classes, "
                f"n_ctx={p.n_ctx}, csc={p.csc} on a text width of {text_width}; got {got}"
            )

    @classmethod
    def class_features(cls, artifact: PromptArtifact, tower: TextTower) -> np.ndarray:
        p: CoOpParams = cls.params(artifact)
        prompts, eot = build_prompts(
            tower,
            artifact.tensors["ctx"].astype(np.float32),
            clip_manifest(artifact).classnames,
            p.class_token_position,
        )
        return l2_normalize(tower.encode(prompts, eot)).astype(np.float32)


def build_prompts(
    tower: TextTower, ctx: np.ndarray, classnames: list[str], position: str
) -> tuple[np.ndarray, np.ndarray]:
    """Token-embedding sequences [n_cls, L, D] and EOT positions [n_cls] for CoOp prompts."""
    n_ctx = ctx.shape[-2]
    names = [name.replace("_", " ") for name in classnames]
    name_lens = [len(tower.tokenizer.encode(name)) for name in names]
    ids = prompt_ids(tower, " ".join(["X"] * n_ctx), classnames)
    emb = tower.embed_tokens(ids)
    if ctx.ndim == 2:
        ctx = np.broadcast_to(ctx, (len(names), *ctx.shape))
    prefix, suffix = emb[:, :1], emb[:, 1 + n_ctx :]
    if position == "end":
        prompts = np.concatenate([prefix, ctx, suffix], axis=1)
    else:
        half = n_ctx // 2
        rows = []
        for i, n in enumerate(name_lens):
            name_i, rest_i = suffix[i, :n], suffix[i, n:]
            parts = (
                [prefix[i], ctx[i, :half], name_i, ctx[i, half:], rest_i]
                if position == "middle"
                else [prefix[i], name_i, ctx[i], rest_i]
            )
            rows.append(np.concatenate(parts, axis=0))
        prompts = np.stack(rows)
    return np.ascontiguousarray(prompts, dtype=np.float32), ids.argmax(axis=-1)


def prompt_ids(tower: TextTower, prefix: str, classnames: list[str]) -> np.ndarray:
    """Token ids [n_cls, L] of "<prefix> <name>." as the CoOp-family prompt learners build them
    (underscores in names become spaces)."""
    names = [name.replace("_", " ") for name in classnames]
    texts = [f"{prefix} {name}." for name in names]
    limit = tower.tokenizer.context_length
    for text, name in zip(texts, names, strict=True):
        # clip.tokenize (which these trainers use) refuses over-long prompts instead of
        # truncating them.
        if len(tower.tokenizer.encode(text)) + 2 > limit:
            raise ArtifactError(
                f"class name {name!r} is too long: its prompt exceeds {limit} tokens"
            )
    return tower.tokenizer(texts)


class KgCoOpMethod(CoOpMethod):
    """`kgcoop` (Yao et al., CVPR 2023): CoOp at inference. Its knowledge-guided loss only
    shapes training; htyao89/KgCoOp `trainers/kgcoop.py::PromptLearner.forward` always puts the
    class token at the end, which `validate` enforces."""

    name = "kgcoop"

    @classmethod
    def validate(cls, artifact: PromptArtifact, bundle: ClipBundleConfig) -> None:
        super().validate(artifact, bundle)
        if cls.params(artifact).class_token_position != "end":
            raise ArtifactError("kgcoop places the class token at the end only")
