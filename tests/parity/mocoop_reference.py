"""MoCoOp inference written from the official code, independent of promptserve.

Followed (dyabel/mocoop, commit 04b5d2ad9635febb1e5b9958cfe908b6db151d43):
- `prompting/moe.py::PromptLearner.__init__`: per expert, the template split around `{}` with
  periods removed (`[0][:-1]`, `[1]`), n_ctx = word counts, `ctx_before_i`/`ctx_after_i`,
  `token_prefix_i`/`token_suffix_i` from `clip.tokenize(before + ' ' + name + after)`, the gate
  `nn.Linear(vis_dim, num_experts)`, the correction `w` [1, ctx_dim];
- `PromptLearner.construct_prompts` / `forward`: [prefix, ctx_before, class, ctx_after, rest];
- `TextEncoder.forward`: + positional embedding, transformer, ln_final, EOT token @ projection;
- `CustomCLIP.compute_gated_text_feature` and `forward` (eval): normalised image features, gate,
  `torch.topk(k=2)`, softmax of the two, `einsum("bk,bkcd->bcd")`, and
  `prompting/losses.py::moe_contrastive_loss(instance_loss=True)`:
  `t.exp() * einsum('bd, bcd->bc')`.
open_clip blocks are batch-first, so the official LND permutes are dropped. The model is fp32
(PREC amp/fp32). Values are seeded stand-ins for trained ones.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import open_clip
import torch
from torch import nn


class MoCoOpReference(nn.Module):
    def __init__(self, clip_model, classnames, templates, *, seed: int, correction: bool):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.clip = clip_model
        ctx_dim = clip_model.ln_final.weight.shape[0]
        vis_dim = clip_model.text_projection.shape[1]  # visual.output_dim
        before_all = [p.replace(".", "").split("{}")[0][:-1] for p in templates]
        after_all = [p.replace(".", "").split("{}")[1] for p in templates]
        self.num_experts = len(templates)
        self.ctx_before, self.ctx_after, self.n_ctx_after = [], [], []
        self.prefix, self.suffix, self.tokenized = [], [], []
        classnames = [name.replace("_", " ") for name in classnames]
        self.name_lens = [len(open_clip.tokenizer._tokenizer.encode(n)) for n in classnames]
        for i in range(self.num_experts):
            vectors = []
            for text in (before_all[i], after_all[i]):
                n_ctx = 0 if len(text) == 0 else len(text.split(" "))
                with torch.no_grad():
                    emb = clip_model.token_embedding(open_clip.tokenize(text.replace("_", " ")))
                # the word-embedding initialisation, then a perturbation standing in for training
                vectors.append(
                    emb[0, 1 : 1 + n_ctx] + 0.05 * torch.randn(n_ctx, ctx_dim, generator=g)
                )
            self.ctx_before.append(vectors[0])
            self.ctx_after.append(vectors[1])
            self.n_ctx_after.append(vectors[1].shape[0])
            prompts = [before_all[i] + " " + name + after_all[i] for name in classnames]
            tokenized = torch.cat([open_clip.tokenize(p) for p in prompts])
            with torch.no_grad():
                embedding = clip_model.token_embedding(tokenized)
            self.tokenized.append(tokenized)
            self.prefix.append(embedding[:, :1, :])
            self.suffix.append(embedding[:, 1 + vectors[0].shape[0] :, :])
        self.gate = nn.Linear(vis_dim, self.num_experts)
        with torch.no_grad():  # spread enough that images choose different experts
            self.gate.weight.copy_(3.0 * torch.randn(self.num_experts, vis_dim, generator=g))
            self.gate.bias.copy_(0.1 * torch.randn(self.num_experts, generator=g))
        self.w = 0.05 * torch.randn(1, ctx_dim, generator=g) if correction else None

    def construct_prompts(self, i):
        n_cls = len(self.name_lens)
        ctx_before = self.ctx_before[i].unsqueeze(0).expand(n_cls, -1, -1)
        ctx_after = self.ctx_after[i].unsqueeze(0).expand(n_cls, -1, -1)
        prompts = []
        for c in range(n_cls):
            name_len = self.name_lens[c]
            prompts.append(
                torch.cat(
                    [
                        self.prefix[i][c : c + 1],
                        ctx_before[c].unsqueeze(0),
                        self.suffix[i][c : c + 1, :name_len],
                        ctx_after[c].unsqueeze(0),
                        self.suffix[i][c : c + 1, name_len + self.n_ctx_after[i] :],
                    ],
                    dim=1,
                )
            )
        return torch.cat(prompts, dim=0)

    def text_encoder(self, prompts, tokenized_prompts):
        x = prompts + self.clip.positional_embedding
        for block in self.clip.transformer.resblocks:
            x = block(x, attn_mask=self.clip.attn_mask)
        x = self.clip.ln_final(x)
        return (
            x[torch.arange(x.shape[0]), tokenized_prompts.argmax(dim=-1)]
            @ self.clip.text_projection
        )

    def expert_text_features(self):
        out = []
        for i in range(self.num_experts):
            feats = self.text_encoder(self.construct_prompts(i), self.tokenized[i])
            if self.w is not None:
                feats = feats + self.w
            out.append(feats / feats.norm(dim=-1, keepdim=True))
        return out

    @torch.no_grad()
    def forward(self, image):
        """-> (logits [B, n_cls], chosen experts [B, 2], their weights [B, 2])."""
        image_features = self.clip.encode_image(image)
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        gating_distribution = self.gate(image_features)
        topk_gating_distribution, indices = torch.topk(gating_distribution, k=2)
        experts = self.expert_text_features()
        text_features_all = []
        for b in range(len(image_features)):
            text_features_all.append(torch.stack([experts[j] for j in indices[b]]))
        weights = torch.softmax(topk_gating_distribution, dim=1)
        text_features = torch.einsum("bk,bkcd->bcd", weights, torch.stack(text_features_all))
        logits = self.clip.logit_scale.exp() * torch.einsum(
            "bd,bcd->bc", image_features, text_features
        )
        return logits, indices, weights

    def checkpoint(self, path: Path) -> Path:
        """As the Dassl trainer saves the registered CustomCLIP: prompt learner keys beside the
        frozen towers (a vision LayerNorm included) and the prefix/suffix buffers."""
        state = {"logit_scale": self.clip.logit_scale.detach().clone()}
        for i in range(self.num_experts):
            state[f"prompt_learner.ctx_before_{i}"] = self.ctx_before[i].clone()
            state[f"prompt_learner.ctx_after_{i}"] = self.ctx_after[i].clone()
            state[f"prompt_learner.token_prefix_{i}"] = self.prefix[i]
            state[f"prompt_learner.token_suffix_{i}"] = self.suffix[i]
        state["prompt_learner.gate.weight"] = self.gate.weight.detach().clone()
        state["prompt_learner.gate.bias"] = self.gate.bias.detach().clone()
        if self.w is not None:
            state["prompt_learner.w"] = self.w.clone()
        ln = self.clip.visual.transformer.resblocks[0].ln_1
        state["image_encoder.transformer.resblocks.0.ln_1.weight"] = ln.weight.detach().clone()
        path.parent.mkdir(parents=True, exist_ok=True)
        sched = argparse.Namespace(last_epoch=5)  # stands in for Dassl's pickled scheduler
        torch.save({"state_dict": state, "epoch": 5, "scheduler": sched}, path)
        return path
