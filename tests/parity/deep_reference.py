"""MaPLe and IVLP inference written from the official code, independent of promptserve.

Followed line by line (muzairkhattak/multimodal-prompt-learning):
- `trainers/maple.py`: `MultiModalPromptLearner.__init__/forward`, `TextEncoder.forward`,
  `CustomCLIP.forward`;
- `clip/model.py`: `ResidualAttentionBlock_MaPLe.forward`, `VisionTransformer_MaPLe.forward`,
  `ResidualAttentionBlock_IVLP.forward`, `VisionTransformer.forward` (VPT);
- PromptSRC `trainers/promptsrc.py`: `VLPromptLearner`, `CustomCLIP.forward` (eval branch).

Adapted to open_clip's modules: its blocks are batch-first, so the official LND permutes are
dropped and the token axis is dim 1 (dim 0 there); attention runs through open_clip's own
`ResidualAttentionBlock` (nn.MultiheadAttention), not promptserve's graphs. The model is fp32,
so each official `.half()` cast rounds a prompt to fp16 and `torch.cat` promotes it back.
"""

from __future__ import annotations

import open_clip
import torch
from torch import nn


def prompt_prefix(ctx_init: str, n_ctx: int) -> str:
    # MultiModalPromptLearner.__init__ / VLPromptLearner.__init__
    if ctx_init and n_ctx <= 4:
        return ctx_init.replace("_", " ")
    return " ".join(["X"] * n_ctx)


class _Prompts(nn.Module):
    """token_prefix / token_suffix / tokenized_prompts as the prompt learners build them."""

    def __init__(self, clip_model, classnames, ctx_init: str, n_ctx: int):
        super().__init__()
        prefix = prompt_prefix(ctx_init, n_ctx)
        classnames = [name.replace("_", " ") for name in classnames]
        prompts = [prefix + " " + name + "." for name in classnames]
        tokenized = torch.cat([open_clip.tokenize(p) for p in prompts])
        with torch.no_grad():
            embedding = clip_model.token_embedding(tokenized)
        self.token_prefix = embedding[:, :1, :]
        self.token_suffix = embedding[:, 1 + n_ctx :, :]
        self.tokenized_prompts = tokenized
        self.n_cls, self.n_ctx = len(classnames), n_ctx

    def construct(self, ctx):
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)


def _text_encoder(clip_model, prompts, tokenized, deep_text, n_ctx):
    """TextEncoder.forward; the block loop is ResidualAttentionBlock_MaPLe (text_layer=True)
    with `counter`, which is also what ResidualAttentionBlock_IVLP does with per-block VPT."""
    x = prompts + clip_model.positional_embedding
    counter = 0
    for i, block in enumerate(clip_model.transformer.resblocks):
        if i != 0 and len(deep_text) > 0 and not (counter > len(deep_text) - 1):
            prefix = x[:, :1, :]
            suffix = x[:, 1 + n_ctx :, :]
            textual_context = deep_text[counter].expand(x.shape[0], -1, -1).half()
            x = torch.cat([prefix, textual_context, suffix], dim=1)
            counter += 1
        x = block(x, attn_mask=clip_model.attn_mask)
    x = clip_model.ln_final(x)
    return x[torch.arange(x.shape[0]), tokenized.argmax(dim=-1)] @ clip_model.text_projection


def _image_encoder(visual, image, shared_ctx, deep_vision):
    """VisionTransformer_MaPLe.forward with ResidualAttentionBlock_MaPLe (vision side); the
    IVLP VisionTransformer (VPT + per-block VPT_shallow) is the same computation."""
    x = visual.conv1(image)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    x = torch.cat(
        [visual.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype), x],
        dim=1,
    )
    x = x + visual.positional_embedding
    visual_ctx = shared_ctx.expand(x.shape[0], -1, -1).half()
    x = torch.cat([x, visual_ctx], dim=1)
    x = visual.ln_pre(x)
    n_ctx = shared_ctx.shape[0]
    counter = 0
    for i, block in enumerate(visual.transformer.resblocks):
        if i != 0 and len(deep_vision) > 0 and not (counter > len(deep_vision) - 1):
            prefix = x[:, 0 : x.shape[1] - n_ctx, :]
            visual_context = deep_vision[counter].expand(x.shape[0], -1, -1).half()
            x = torch.cat([prefix, visual_context], dim=1)
            counter += 1
        x = block(x)
    x = visual.ln_post(x[:, 0, :])
    return x @ visual.proj


def _logits(clip_model, image_features, text_features):
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    text_features = text_features / text_features.norm(dim=-1, keepdim=True)
    return clip_model.logit_scale.exp() * image_features @ text_features.t()


class MaPLeReference(nn.Module):
    """CustomCLIP of trainers/maple.py, eval mode, with the prompt learner's tensors given as
    the checkpoint holds them (`prompt_learner.*` keys without the prefix)."""

    def __init__(self, clip_model, classnames, learner: dict[str, torch.Tensor], ctx_init: str):
        super().__init__()
        self.clip = clip_model
        self.ctx = learner["ctx"].float()
        depth = 1 + sum(k.startswith("compound_prompts_text.") for k in learner)
        self.compound_prompts_text = [
            learner[f"compound_prompts_text.{i}"] for i in range(depth - 1)
        ]
        vis_w, ctx_dim = learner["proj.weight"].shape
        self.proj = nn.Linear(ctx_dim, vis_w)
        self.proj.weight.data, self.proj.bias.data = learner["proj.weight"], learner["proj.bias"]
        self.proj.float()  # the fp16 trainer keeps proj in fp16; our fp32 model computes in fp32
        self.compound_prompt_projections = []
        for i in range(depth - 1):
            layer = nn.Linear(ctx_dim, vis_w)
            layer.weight.data = learner[f"compound_prompt_projections.{i}.weight"].float()
            layer.bias.data = learner[f"compound_prompt_projections.{i}.bias"].float()
            self.compound_prompt_projections.append(layer)
        self.prompts = _Prompts(clip_model, classnames, ctx_init, self.ctx.shape[0])

    def prompt_learner(self):
        prompts = self.prompts.construct(self.ctx)
        visual_deep_prompts = [
            layer(self.compound_prompts_text[index].float())
            for index, layer in enumerate(self.compound_prompt_projections)
        ]
        return prompts, self.proj(self.ctx), self.compound_prompts_text, visual_deep_prompts

    @torch.no_grad()
    def forward(self, image):
        prompts, shared_ctx, deep_text, deep_vision = self.prompt_learner()
        text = _text_encoder(
            self.clip, prompts, self.prompts.tokenized_prompts, deep_text, self.prompts.n_ctx
        )
        image_features = _image_encoder(self.clip.visual, image, shared_ctx, deep_vision)
        return _logits(self.clip, image_features, text)


class IVLPReference(nn.Module):
    """CustomCLIP of PromptSRC's trainers/promptsrc.py (and IVLP), eval mode. `state` holds the
    checkpoint's keys: prompt_learner.ctx, image_encoder.VPT and the per-block VPT_shallow."""

    def __init__(self, clip_model, classnames, state: dict[str, torch.Tensor], ctx_init: str):
        super().__init__()
        self.clip = clip_model
        self.ctx = state["prompt_learner.ctx"].float()
        self.vpt = state["image_encoder.VPT"]

        def per_block(tower):
            # ResidualAttentionBlock_IVLP: blocks 1..depth-1 own a VPT_shallow, block 0 none
            key = f"{tower}_encoder.transformer.resblocks.{{}}.VPT_shallow"
            return [state[key.format(i)] for i in range(1, 64) if key.format(i) in state]

        self.text_vpt, self.vision_vpt = per_block("text"), per_block("image")
        self.prompts = _Prompts(clip_model, classnames, ctx_init, self.ctx.shape[0])

    @torch.no_grad()
    def forward(self, image):
        prompts = self.prompts.construct(self.ctx)
        text = _text_encoder(
            self.clip, prompts, self.prompts.tokenized_prompts, self.text_vpt, self.prompts.n_ctx
        )
        image_features = _image_encoder(self.clip.visual, image, self.vpt, self.vision_vpt)
        return _logits(self.clip, image_features, text)
