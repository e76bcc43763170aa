"""AnomalyCLIP's vision side written from the official code, independent of promptserve.

Followed (zqhang/AnomalyCLIP `AnomalyCLIP_lib/AnomalyCLIP.py`): `Attention.forward` (the v-v
path), `ResidualAttentionBlock.forward` (dual paths, `ffn=False`), `Transformer.
AnomalyCLIP_forward` / `ori_CLIP_with_patch_forward`, `VisionTransformer.DAPM_replace` and
`VisionTransformer.forward` (positional-embedding interpolation, `ln_post`/`proj` on the tapped
tokens, the class token returned without `ln_post`), and `model_load.py::compute_similarity`,
`get_similarity_map` plus `test.py`'s map and score arithmetic.

Adapted to open_clip's weights: open_clip's blocks are batch-first, so the reference keeps the
official LND layout by permuting in and out; the official `Attention` is rebuilt from each
block's `in_proj`/`out_proj` exactly as `DAPM_replace` copies them.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class Attention(nn.Module):
    def __init__(self, out_dim, dim, num_heads=8, qkv_bias=False):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(out_dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = (
            self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        )
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn_ori = (q @ k.transpose(-2, -1)) * self.scale
        attn_ori = attn_ori.softmax(dim=-1)
        k = v
        q = k
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = (attn).softmax(dim=-1)
        x_ori = (attn_ori @ v).transpose(1, 2).reshape(B, N, C)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        x = self.proj(x)
        x_ori = self.proj(x_ori)
        return [x, x_ori]


class Block(nn.Module):
    """ResidualAttentionBlock over an open_clip block's weights, LND in and out."""

    def __init__(self, block):
        super().__init__()
        self.ln_1, self.ln_2, self.mlp = block.ln_1, block.ln_2, block.mlp
        self.attn = block.attn  # nn.MultiheadAttention until DAPM_replace

    def attention(self, x):
        if isinstance(self.attn, Attention):
            x = x.transpose(0, 1)
            x, x_ori = self.attn(x)
            return [x.transpose(0, 1), x_ori.transpose(0, 1)]
        return self.attn(x, x, x, need_weights=False)[0]

    def forward(self, x):
        if isinstance(self.attn, Attention):
            if isinstance(x, list):
                x, x_ori = x
                x_res = self.attention(self.ln_1(x_ori))
                x_res, x_ori_res = x_res
                x_ori += x_ori_res
                x_ori = x_ori + self.mlp(self.ln_2(x_ori))
                x += x_res
                return [x, x_ori]
            x_res = self.attention(self.ln_1(x))
            x_res, x_ori_res = x_res
            x_ori = x + x_ori_res
            x_ori = x_ori + self.mlp(self.ln_2(x_ori))
            x += x_res
            return [x, x_ori]
        x = x + self.attention(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class AnomalyCLIPVisual(nn.Module):
    def __init__(self, clip_model):
        super().__init__()
        visual = copy.deepcopy(clip_model.visual)  # the official code mutates its model
        # open_clip's MultiheadAttention is batch_first; the official blocks run LND
        for b in visual.transformer.resblocks:
            b.attn.batch_first = False
        self.v = visual
        self.positional_embedding = nn.Parameter(visual.positional_embedding.detach().clone())
        self.resblocks = [Block(b) for b in visual.transformer.resblocks]
        self.embed_dim = visual.conv1.weight.shape[0]
        self.num_heads = visual.transformer.resblocks[0].attn.num_heads

    @torch.no_grad()
    def DAPM_replace(self, DPAM_layer):
        for i in range(1, DPAM_layer):
            attn = Attention(self.embed_dim, self.embed_dim, self.num_heads, True)
            src = self.resblocks[-i].attn
            attn.qkv.weight.data = src.in_proj_weight.clone()
            attn.qkv.bias.data = src.in_proj_bias.clone()
            attn.proj.weight.data = src.out_proj.weight.clone()
            attn.proj.bias.data = src.out_proj.bias.clone()
            self.resblocks[-i].attn = attn

    def transformer(self, x, out_layers, DPAM_layer):
        idx = 0
        out_tokens = []
        if DPAM_layer is None:  # ori_CLIP_with_patch_forward
            for r in self.resblocks:
                idx += 1
                x = r(x)
                if idx in out_layers:
                    out_tokens.append(x[1].clone() if isinstance(x, list) else x.clone())
            return [x, x], out_tokens
        for r in self.resblocks:  # AnomalyCLIP_forward
            idx += 1
            x = r(x)
            if idx in out_layers:
                out_tokens.append(x[0].clone() if isinstance(x, list) else x.clone())
        return x, out_tokens

    @torch.no_grad()
    def forward(self, x, features_list, DPAM_layer=None):
        v = self.v
        x = v.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1)
        x = x.permute(0, 2, 1)
        x = torch.cat(
            [
                v.class_embedding.to(x.dtype)
                + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype),
                x,
            ],
            dim=1,
        )
        side = int((self.positional_embedding.shape[0] - 1) ** 0.5)
        new_side = int((x.shape[1] - 1) ** 0.5)
        if side != new_side:
            new_pos = (
                self.positional_embedding[1:, :]
                .reshape(-1, side, side, x.shape[-1])
                .permute(0, 3, 1, 2)
            )
            new_pos = torch.nn.functional.interpolate(
                new_pos, (new_side, new_side), mode="bilinear"
            )
            new_pos = new_pos.reshape(-1, x.shape[-1], new_side * new_side).transpose(1, 2)
            self.positional_embedding.data = torch.cat(
                [self.positional_embedding[:1, :], new_pos[0]], 0
            )
        x = x + self.positional_embedding.to(x.dtype)
        x = v.ln_pre(x)
        x = x.permute(1, 0, 2)
        [x, x_ori], patch_tokens = self.transformer(x, features_list, DPAM_layer)
        patch_tokens = [v.ln_post(p.permute(1, 0, 2)) @ v.proj for p in patch_tokens]
        return x_ori[0, :, :] @ v.proj, patch_tokens


def compute_similarity(image_features, text_features, t=2):
    prob_1 = image_features[:, :1, :] @ text_features.t()
    b, n_t, n_i, c = (
        image_features.shape[0],
        text_features.shape[0],
        image_features.shape[1],
        image_features.shape[2],
    )
    feats = image_features.reshape(b, n_i, 1, c) * text_features.reshape(1, 1, n_t, c)
    similarity = feats.sum(-1)
    return (similarity / 0.07).softmax(-1), prob_1


def get_similarity_map(sm, shape):
    side = int(sm.shape[1] ** 0.5)
    sm = sm.reshape(sm.shape[0], side, side, -1).permute(0, 3, 1, 2)
    sm = torch.nn.functional.interpolate(sm, shape, mode="bilinear")
    sm = sm.permute(0, 2, 3, 1)
    return sm


def encode_text_learn(clip_model, prompts, tokenized_prompts, deep_compound_prompts_text, t_n_ctx):
    """AnomalyCLIP.encode_text_learn with ResidualAttentionBlock_learnable_token (text side):
    deep prompts replace positions 1..t_n_ctx at layers 1.. with a `.half()` cast. open_clip's
    text blocks are batch-first, so the token axis is dim 1 here (dim 0 there)."""
    x = prompts + clip_model.positional_embedding
    counter = 0
    for i, r in enumerate(clip_model.transformer.resblocks):
        if i != 0 and not (counter > len(deep_compound_prompts_text) - 1):
            prefix = x[:, :1, :]
            suffix = x[:, 1 + t_n_ctx :, :]
            textual_context = deep_compound_prompts_text[counter]
            textual_context = textual_context.expand(x.shape[0], -1, -1).half()
            x = torch.cat([prefix, textual_context, suffix], dim=1)
            counter += 1
        x = r(x, attn_mask=clip_model.attn_mask)
    x = clip_model.ln_final(x)
    return (
        x[torch.arange(x.shape[0]), tokenized_prompts.argmax(dim=-1)] @ clip_model.text_projection
    )


class PromptLearner(nn.Module):
    """AnomalyCLIP_PromptLearner (prompt_ensemble.py) with random contexts (ctx_init empty),
    one class "object", one normal and one anomalous state."""

    def __init__(self, clip_model, n_ctx: int, depth: int, t_n_ctx: int, seed: int = 0):
        super().__init__()
        import open_clip

        g = torch.Generator().manual_seed(seed)
        d = clip_model.ln_final.weight.shape[0]
        self.ctx_pos = nn.Parameter(0.02 * torch.randn(1, 1, n_ctx, d, generator=g))
        self.ctx_neg = nn.Parameter(0.02 * torch.randn(1, 1, n_ctx, d, generator=g))
        self.compound_prompts_text = nn.ParameterList(
            [nn.Parameter(0.02 * torch.randn(t_n_ctx, d, generator=g)) for _ in range(depth - 1)]
        )
        layer = nn.Linear(d, 896)
        self.compound_prompt_projections = nn.ModuleList(
            [copy.deepcopy(layer) for _ in range(depth - 1)]
        )
        prefix = " ".join(["X"] * n_ctx)
        tok_pos = open_clip.tokenize([prefix + " " + "object" + "."])
        tok_neg = open_clip.tokenize([prefix + " " + "damaged object" + "."])
        with torch.no_grad():
            emb_pos = clip_model.token_embedding(tok_pos)[None]
            emb_neg = clip_model.token_embedding(tok_neg)[None]
        self.register_buffer("token_prefix_pos", emb_pos[:, :, :1, :])
        self.register_buffer("token_suffix_pos", emb_pos[:, :, 1 + n_ctx :, :])
        self.register_buffer("token_prefix_neg", emb_neg[:, :, :1, :])
        self.register_buffer("token_suffix_neg", emb_neg[:, :, 1 + n_ctx :, :])
        self.register_buffer("tokenized_prompts_pos", tok_pos[None])
        self.register_buffer("tokenized_prompts_neg", tok_neg[None])
        self.t_n_ctx = t_n_ctx

    def forward(self):
        prompts_pos = torch.cat([self.token_prefix_pos, self.ctx_pos, self.token_suffix_pos], dim=2)
        prompts_neg = torch.cat([self.token_prefix_neg, self.ctx_neg, self.token_suffix_neg], dim=2)
        _, _, length, d = prompts_pos.shape
        prompts = torch.cat(
            [prompts_pos.reshape(-1, length, d), prompts_neg.reshape(-1, length, d)], dim=0
        )
        tok = torch.cat(
            [
                self.tokenized_prompts_pos.reshape(-1, length),
                self.tokenized_prompts_neg.reshape(-1, length),
            ]
        )
        return prompts, tok, self.compound_prompts_text


@torch.no_grad()
def official_test_step(
    clip_model, learner: PromptLearner, image, *, features_list, dpam_layer, image_size, sigma
):
    """test.py's loop body for one batch: image scores (pr_sp) and blurred anomaly maps."""
    from scipy.ndimage import gaussian_filter

    prompts, tokenized_prompts, compound_prompts_text = learner()
    text_features = encode_text_learn(
        clip_model, prompts, tokenized_prompts, compound_prompts_text, learner.t_n_ctx
    ).float()
    text_features = torch.stack(torch.chunk(text_features, dim=0, chunks=2), dim=1)
    text_features = text_features / text_features.norm(dim=-1, keepdim=True)
    visual = AnomalyCLIPVisual(clip_model)
    visual.DAPM_replace(DPAM_layer=dpam_layer)
    image_features, patch_features = visual(image, features_list, DPAM_layer=dpam_layer)
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    text_probs = image_features @ text_features.permute(0, 2, 1)
    text_probs = (text_probs / 0.07).softmax(-1)
    text_probs = text_probs[:, 0, 1]
    anomaly_map_list = []
    for patch_feature in patch_features:
        patch_feature = patch_feature / patch_feature.norm(dim=-1, keepdim=True)
        similarity, _ = compute_similarity(patch_feature, text_features[0])
        similarity_map = get_similarity_map(similarity[:, 1:, :], image_size)
        anomaly_map = (similarity_map[..., 1] + 1 - similarity_map[..., 0]) / 2.0
        anomaly_map_list.append(anomaly_map)
    anomaly_map = torch.stack(anomaly_map_list).sum(dim=0)
    anomaly_map = torch.stack(
        [torch.from_numpy(gaussian_filter(i, sigma=sigma)) for i in anomaly_map.cpu()], dim=0
    )
    return text_probs.numpy(), anomaly_map.numpy(), text_features[0].numpy()
