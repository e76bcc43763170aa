"""L2P inference written from the official code, independent of promptserve.

Followed (JH-LEE-KR/l2p-pytorch, commit 009146a08ecd2ad0f8e482f7809a8f4ef2100729):
- `prompt.py::Prompt.l2_normalize` and `Prompt.forward` with `prompt_pool=True`,
  `prompt_key=True`, `embedding_key='cls'` (the query is `cls_features`, the frozen model's
  feature, `engine.py`: `original_model(input)['pre_logits']`) and `batchwise_prompt=False`:
  cosine similarity, `torch.topk`, `torch.gather` of the prompts, reshape to
  [B, top_k * length, C], `torch.cat([batched_prompt, x_embed], dim=1)`;
- `vision_transformer.py::VisionTransformer.forward_features`: the prompted patch embedding,
  then the class token in front, then the position embedding, then the blocks.

Adapted to open_clip's CLIP ViT (the served backbone): CLIP's position embedding covers only
[class, patches] and there are no learned position embeddings for prompts, so the prompts get
none; CLIP's `ln_pre` runs before the blocks and `ln_post(x[:, 0]) @ proj` after them (its own
head), classified zero-shot against the template-ensemble text features
(open_clip `zero_shot_classifier.py::build_zero_shot_classifier`). The token order of
l2p is kept ([class, prompts, patches]); promptserve appends prompts after the patches.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import open_clip
import torch
from torch import nn


def l2_normalize(x, dim=None, epsilon=1e-12):
    square_sum = torch.sum(x**2, dim=dim, keepdim=True)
    x_inv_norm = torch.rsqrt(torch.maximum(square_sum, torch.tensor(epsilon, device=x.device)))
    return x * x_inv_norm


class Prompt(nn.Module):
    """Prompt.forward for the served configuration (pool, learned keys, `cls` query)."""

    def __init__(self, prompt: torch.Tensor, prompt_key: torch.Tensor, top_k: int):
        super().__init__()
        self.prompt = nn.Parameter(prompt)
        self.prompt_key = nn.Parameter(prompt_key)
        self.top_k, self.length = top_k, prompt.shape[1]

    def forward(self, x_embed, cls_features):
        out = {}
        prompt_norm = l2_normalize(self.prompt_key, dim=1)  # Pool_size, C
        x_embed_norm = l2_normalize(cls_features, dim=1)  # B, C
        similarity = torch.matmul(x_embed_norm, prompt_norm.t())  # B, Pool_size
        _, idx = torch.topk(similarity, k=self.top_k, dim=1)  # B, top_k
        batched_prompt_raw = torch.gather(
            self.prompt.expand(idx.shape[0], -1, -1, -1),
            index=idx.unsqueeze(-1).unsqueeze(-1).expand(-1, -1, self.length, x_embed.shape[-1]),
            dim=1,
        )  # B, top_k, length, C
        batch_size, top_k, length, c = batched_prompt_raw.shape
        batched_prompt = batched_prompt_raw.reshape(batch_size, top_k * length, c)
        out["prompt_idx"] = idx
        out["similarity"] = similarity
        out["total_prompt_len"] = batched_prompt.shape[1]
        out["prompted_embedding"] = torch.cat([batched_prompt, x_embed], dim=1)
        return out


def zero_shot_classifier(clip_model, classnames, templates):
    with torch.no_grad():
        weights = []
        for name in classnames:
            texts = open_clip.tokenize([t.format(name) for t in templates])
            emb = clip_model.encode_text(texts)
            emb = emb / emb.norm(dim=-1, keepdim=True)
            emb = emb.mean(dim=0)
            weights.append(emb / emb.norm())
        return torch.stack(weights, dim=1)  # [E, n_cls]


class L2PReference(nn.Module):
    def __init__(self, clip_model, classnames, templates, prompt, prompt_key, top_k: int):
        super().__init__()
        self.clip = clip_model
        self.prompt = Prompt(prompt.float(), prompt_key.float(), top_k)
        self.classifier = zero_shot_classifier(clip_model, classnames, templates)

    def forward_features(self, image, cls_features):
        visual = self.clip.visual
        x = visual.conv1(image)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # patches [B, N, W]
        cls = visual.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
        # CLIP's position embedding belongs to [class, patches]; the prompts have none
        pos = visual.positional_embedding
        x, cls = x + pos[1:], cls + pos[:1]
        res = self.prompt(x, cls_features=cls_features)
        x = torch.cat([cls, res["prompted_embedding"]], dim=1)  # [class, prompts, patches]
        x = visual.ln_pre(x)
        for block in visual.transformer.resblocks:
            x = block(x)
        res["features"] = visual.ln_post(x[:, 0]) @ visual.proj
        return res

    @torch.no_grad()
    def forward(self, image):
        """-> (logits [B, n_cls], chosen prompt indices [B, top_k], similarities [B, M])."""
        cls_features = self.clip.encode_image(image)  # the frozen model's query
        res = self.forward_features(image, cls_features)
        feats = res["features"] / res["features"].norm(dim=-1, keepdim=True)
        logits = self.clip.logit_scale.exp() * feats @ self.classifier
        return logits, res["prompt_idx"], res["similarity"]


def l2p_checkpoint(path: Path, prompt, prompt_key, top_k: int) -> Path:
    """As l2p-pytorch `main.py` saves it: {"model", "optimizer", "epoch", "args"}; the pickled
    argparse Namespace makes weights-only loading refuse the file, as with the real ones."""
    model = {
        "prompt.prompt": prompt,
        "prompt.prompt_key": prompt_key,
        "head.weight": torch.zeros(10, prompt.shape[-1]),
        "head.bias": torch.zeros(10),
    }
    args = argparse.Namespace(top_k=top_k, size=prompt.shape[0], length=prompt.shape[1])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "optimizer": {}, "epoch": 4, "args": args}, path)
    return path
