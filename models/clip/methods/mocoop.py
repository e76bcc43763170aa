"""`mocoop`: a mixture of CoOp prompt experts chosen per image (MoCoOp, Du et al. 2024,
"Mixture of Prompt Learning for Vision Language Models").

Official code: dyabel/mocoop `prompting/moe.py` (commit 04b5d2a), followed here:
- each expert k is a hand template "<before> {} <after>" (the config's `PROMPTS`, one per
  group) whose word slots before and after the class name are learned vectors
  (`ctx_before_k` [n_b, D], `ctx_after_k` [n_a, D]); `PromptLearner.construct_prompts` builds
  [SOS][ctx_before][name][ctx_after][rest of the tokenized text: EOT, padding] from the
  tokenized text `before + " " + name + after` (periods removed from the template);
- `ENABLE_CORRECTION`: a vector `w` [1, E] is added to every expert's text features before
  they are L2-normalised (`CustomCLIP.compute_gated_text_feature`);
- the gate is a Linear(E, K) on the L2-normalised image feature; the top-2 gate logits
  (`torch.topk(k=2)`) are softmaxed between themselves (= the softmax renormalised over the
  two experts), and the class features are the weighted sum of the two experts' normalised
  features (not re-normalised); logits = exp(logit_scale) * image · mixed
  (`losses.py::moe_contrastive_loss`, instance_loss=True). That equals the same mix of the two
  experts' logits, which is what we compute.

Serving: every expert's class-feature matrix is text-only, so all K are encoded once at
registration ([K * n_cls, E]); a request is one plain vision pass, the gate and a [B, K*C]
matmul from which each row takes its two experts, so rows that chose different experts batch
together. Deviations: the official trainer also fine-tunes the vision tower's LayerNorms
(`FINETUNE_VIT_LN`, on in the released configs); we serve the frozen backbone, so such
checkpoints lose those LN updates (the importer warns). The LASP text-to-text loss and the
class prototypes only shape training.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from promptserve.models.artifacts import ArtifactError, PromptArtifact
from promptserve.models.clip.bundle import ClipBundleConfig
from promptserve.models.clip.methods.base import ClassHead, PromptMethod, clip_manifest
from promptserve.models.clip.text import TextTower, l2_normalize

TOP_EXPERTS = 2  # the official `torch.topk(gating_distribution, k=2)`


class MoCoOpParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    templates: list[str] = Field(
        min_length=TOP_EXPERTS,
        description="Each expert's template, in expert order (one `{}` for the class name): "
        "the first template of each group of the training config's PROMPTS/GROUPS.",
    )

    @field_validator("templates")
    @classmethod
    def _one_slot(cls, templates: list[str]) -> list[str]:
        if any(t.count("{}") != 1 for t in templates):
            raise ValueError("every template needs exactly one `{}`")
        return templates


def split_template(template: str) -> tuple[str, str]:
    """moe.py: `prompt.replace('.','').split('{}')[0][:-1]` and `[1]`."""
    before, after = template.replace(".", "").split("{}")
    return before[:-1], after


def expert_tensors(artifact: PromptArtifact, k: int) -> tuple[np.ndarray, np.ndarray]:
    t = artifact.tensors
    return (
        np.asarray(t[f"ctx_before.{k}"], np.float32),
        np.asarray(t[f"ctx_after.{k}"], np.float32),
    )


def expert_prompts(
    tower: TextTower,
    template: str,
    ctx_before: np.ndarray,
    ctx_after: np.ndarray,
    classnames: list[str],
) -> tuple[np.ndarray, np.ndarray]:
    """One expert's token-embedding sequences [n_cls, L, D] and EOT positions [n_cls]."""
    before, after = split_template(template)
    names = [name.replace("_", " ") for name in classnames]
    # coop.prompt_ids builds "<prefix> <name>." (CoOp's text); MoCoOp's has no period and its
    # after-part glued to the name, so it is tokenized here, with the same length check.
    texts = [f"{before} {name}{after}" for name in names]
    limit = tower.tokenizer.context_length
    for text, name in zip(texts, names, strict=True):
        if len(tower.tokenizer.encode(text)) + 2 > limit:
            raise ArtifactError(f"class name {name!r} is too long: its prompt exceeds {limit}")
    ids = tower.tokenizer(texts)
    emb = tower.embed_tokens(ids)
    n_b, n_a = len(ctx_before), len(ctx_after)
    rows = []
    for i, name in enumerate(names):
        n = len(tower.tokenizer.encode(name))
        suffix = emb[i, 1 + n_b :]
        rows.append(
            np.concatenate(
                [emb[i, :1], ctx_before, suffix[:n], ctx_after, suffix[n + n_a :]], axis=0
            )
        )
    return np.ascontiguousarray(np.stack(rows), np.float32), ids.argmax(axis=-1)


@dataclass(frozen=True)
class MoCoOpHead(ClassHead):
    """`features` holds every expert's class features, [K * n_cls, E]."""

    gate_weight: np.ndarray = None  # type: ignore[assignment]  # [K, E]
    gate_bias: np.ndarray = None  # type: ignore[assignment]  # [K]

    def route(self, image_embeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[B, E] -> the two experts per image [B, 2] (highest gate first) and their weights
        [B, 2] (softmax over the two gate logits)."""
        gate = l2_normalize(image_embeds.astype(np.float32)) @ self.gate_weight.T + self.gate_bias
        index = np.argsort(-gate, axis=1, kind="stable")[:, :TOP_EXPERTS]
        top = np.take_along_axis(gate, index, axis=1)
        weight = np.exp(top - top.max(axis=1, keepdims=True))
        return index, weight / weight.sum(axis=1, keepdims=True)

    def logits(self, image_embeds: np.ndarray, logit_scale: float) -> np.ndarray:
        n_cls = len(self.labels)
        index, weight = self.route(image_embeds)
        per_expert = super().logits(image_embeds, logit_scale)  # [B, K * n_cls]
        per_expert = per_expert.reshape(len(image_embeds), -1, n_cls)
        chosen = np.take_along_axis(per_expert, index[:, :, None], axis=1)  # [B, 2, n_cls]
        return np.einsum("bk,bkc->bc", weight, chosen).astype(np.float32)


class MoCoOpMethod(PromptMethod):
    """Tensors: `ctx_before.{k}` [n_b, D], `ctx_after.{k}` [n_a, D] per expert k (n_b/n_a may
    differ between experts and be 0), `gate.weight` [K, E], optional `gate.bias` [K] and
    `w` [1, E] (ENABLE_CORRECTION); hparams `templates` (K)."""

    name = "mocoop"
    params_model: ClassVar[type[BaseModel]] = MoCoOpParams

    @classmethod
    def n_experts(cls, artifact: PromptArtifact) -> int:
        return len(cls.params(artifact).templates)

    @classmethod
    def validate(cls, artifact: PromptArtifact, bundle: ClipBundleConfig) -> None:
        k = cls.n_experts(artifact)
        t = artifact.tensors
        pattern = re.compile(r"ctx_(before|after)\.(\d+)")
        found = {int(m.group(2)) for key in t if (m := pattern.fullmatch(key))}
        expected = set(range(k))
        missing = [f"ctx_{s}.{i}" for i in range(k) for s in ("before", "after")]
        missing = [key for key in missing if key not in t]
        if missing or found != expected:
            raise ArtifactError(
                f"mocoop with {k} templates needs ctx_before.i/ctx_after.i for i in 0..{k - 1}; "
                f"missing {missing}, found experts {sorted(found)}"
            )
        for i in range(k):
            for key in (f"ctx_before.{i}", f"ctx_after.{i}"):
                if t[key].ndim != 2 or t[key].shape[1] != bundle.text_width:
                    raise ArtifactError(
                        f"mocoop `{key}` must be [n, {bundle.text_width}]; got {tuple(t[key].shape)}"
                    )
        gate = t.get("gate.weight")
        if gate is None or tuple(gate.shape) != (k, bundle.embed_dim):
            got = None if gate is None else tuple(gate.shape)
            raise ArtifactError(
                f"mocoop `gate.weight` must be ({k}, {bundle.embed_dim}) (experts, image feature "
                f"width); got {got}"
            )
        for key, shape in (("gate.bias", (k,)), ("w", (1, bundle.embed_dim))):
            if key in t and tuple(t[key].shape) != shape:
                raise ArtifactError(f"mocoop `{key}` must be {shape}; got {tuple(t[key].shape)}")

    @classmethod
    def class_features(cls, artifact: PromptArtifact, tower: TextTower) -> np.ndarray:
        """[K * n_cls, E]: expert k's normalised class features in rows k*n_cls..(k+1)*n_cls."""
        p: MoCoOpParams = cls.params(artifact)
        names = clip_manifest(artifact).classnames
        w = artifact.tensors.get("w")
        experts = []
        for k, template in enumerate(p.templates):
            prompts, eot = expert_prompts(tower, template, *expert_tensors(artifact, k), names)
            feats = tower.encode(prompts, eot)
            if w is not None:
                feats = feats + np.asarray(w, np.float32)
            experts.append(l2_normalize(feats))
        return np.concatenate(experts).astype(np.float32)

    @classmethod
    def make_head(
        cls, artifact: PromptArtifact, features: np.ndarray, tower: TextTower
    ) -> ClassHead:
        t = artifact.tensors
        gate_weight = np.asarray(t["gate.weight"], np.float32)
        bias = t.get("gate.bias")
        gate_bias = np.zeros(len(gate_weight), np.float32) if bias is None else bias
        return MoCoOpHead(
            tuple(clip_manifest(artifact).classnames),
            features,
            gate_weight=gate_weight,
            gate_bias=np.asarray(gate_bias, np.float32),
        )


__all__ = ["MoCoOpHead", "MoCoOpMethod", "MoCoOpParams", "expert_prompts"]
