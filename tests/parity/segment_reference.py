"""MaskCLIP, SCLIP and ClearCLIP written from their official code, independent of promptserve.

Followed:
- SCLIP (wangf3014/SCLIP): `clip/model.py::VisionTransformer.forward` (last block:
  `x = x + custom_attn(blk.attn, blk.ln_1(x), csa=True); x = x + blk.mlp(blk.ln_2(x))`, then
  `ln_post(x) @ proj` on every token), `custom_attn` (heads split, `bmm(q, q^T) * scale`,
  softmax per term, summed, `bmm` with v, `out_proj`), `interpolate_pos_encoding` (bicubic
  with scale factor (n + 0.1) / 14), `clip_segmentor.py::forward_feature`, `forward_slide`
  and `postprocess_result` (softmax over names, max per class, `prob_thd` -> 0).
- ClearCLIP (mc-lan/ClearCLIP `open_clip/transformer.py::VisionTransformer.forward` with
  `ignore_residual=True`: `output = custom_attn(blk.attn, blk.ln_1(x), 'ClearCLIP')`, no
  residual, no mlp; `custom_attn` 'ClearCLIP' = softmax(q q^T * scale) on v, `out_proj`).
- MaskCLIP (chongzhou96/MaskCLIP `mmseg/models/backbones/vit.py::TransformerEncoderLayer.
  forward(return_qkv=True)`: `y = in_proj(norm1(x))` split into q/k/v, `out_proj` on each,
  `v += x`, `v = ffn(norm2(v), identity=v)`, then the backbone's final norm on v;
  `resize_pos_embed` bicubic by size; `maskclip_head.py`: proj as a 1x1 conv, features L2
  normalised over channels, conv with the text embeddings).

Adapted to open_clip's weights: the official SCLIP/ClearCLIP code runs LND, so the reference
permutes in and out; MaskCLIP's mmseg ViT is built here from the same CLIP blocks (its erf-GELU
and eps 1e-6 LayerNorms belong to mmseg's ViT, not to the method: docs/architecture.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def interpolate_pos_encoding(visual, h: int, w: int) -> torch.Tensor:
    """SCLIP `interpolate_pos_encoding` for an h x w input (DINO's scale-factor form)."""
    pos = visual.positional_embedding
    n = pos.shape[0] - 1
    patch = visual.conv1.kernel_size[0]
    h0, w0 = h // patch, w // patch
    if h0 * w0 == n and h == w:
        return pos
    side = int(math.sqrt(n))
    h0, w0 = h0 + 0.1, w0 + 0.1
    grid = F.interpolate(
        pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2),
        scale_factor=(h0 / side, w0 / side),
        mode="bicubic",
    )
    grid = grid.permute(0, 2, 3, 1).reshape(-1, pos.shape[-1])
    return torch.cat([pos[:1], grid], dim=0)


def resize_pos_embed(visual, h: int, w: int) -> torch.Tensor:
    """MaskCLIP `resize_pos_embed`: bicubic to the new grid size."""
    pos = visual.positional_embedding
    patch = visual.conv1.kernel_size[0]
    side = int(math.sqrt(pos.shape[0] - 1))
    grid = F.interpolate(
        pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2),
        size=(h // patch, w // patch),
        mode="bicubic",
        align_corners=False,
    )
    return torch.cat([pos[:1], grid.flatten(2).transpose(1, 2)[0]], dim=0)


def custom_attn(attn_layer, x: torch.Tensor, mode: str) -> torch.Tensor:
    """SCLIP/ClearCLIP `custom_attn` on x [L, N, D] (LND)."""
    num_heads = attn_layer.num_heads
    _, bsz, embed_dim = x.size()
    head_dim = embed_dim // num_heads
    scale = head_dim**-0.5
    q, k, v = F.linear(x, attn_layer.in_proj_weight, attn_layer.in_proj_bias).chunk(3, dim=-1)
    q = q.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    k = k.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    v = v.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    q_attn = torch.bmm(q, q.transpose(1, 2)) * scale
    if mode == "sclip":
        k_attn = torch.bmm(k, k.transpose(1, 2)) * scale
        attn_weights = F.softmax(q_attn, dim=-1) + F.softmax(k_attn, dim=-1)
    else:  # ClearCLIP
        attn_weights = F.softmax(q_attn, dim=-1)
    attn_output = torch.bmm(attn_weights, v)
    attn_output = attn_output.transpose(0, 1).contiguous().view(-1, bsz, embed_dim)
    return attn_layer.out_proj(attn_output)


def encode_image(model, img: torch.Tensor, mode: str) -> torch.Tensor:
    """[B, 3, H, W] -> patch features [B, h*w, E] (class token dropped), per method."""
    v = model.visual
    b, _, h, w = img.shape
    x = v.conv1(img)
    x = x.reshape(b, x.shape[1], -1).permute(0, 2, 1)
    cls = v.class_embedding.to(x.dtype) + torch.zeros(b, 1, x.shape[-1], dtype=x.dtype)
    x = torch.cat([cls, x], dim=1)
    pos = resize_pos_embed(v, h, w) if mode == "maskclip" else interpolate_pos_encoding(v, h, w)
    x = x + pos.to(x.dtype)
    x = v.ln_pre(x)
    x = x.permute(1, 0, 2)  # LND
    for blk in v.transformer.resblocks[:-1]:
        x = blk(x.permute(1, 0, 2)).permute(1, 0, 2)  # open_clip blocks are batch-first
    blk = v.transformer.resblocks[-1]
    if mode == "maskclip":
        attn = blk.attn
        y = F.linear(blk.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
        L, N, C3 = y.shape
        y = y.view(L, N, 3, C3 // 3).permute(2, 0, 1, 3).reshape(3 * L, N, C3 // 3)
        y = F.linear(y, attn.out_proj.weight, attn.out_proj.bias)
        _q, _k, val = y.tensor_split(3, dim=0)  # q and k only feed key smoothing (off)
        val = val + x
        x = val + blk.mlp(blk.ln_2(val))
    elif mode == "sclip":
        x = x + custom_attn(blk.attn, blk.ln_1(x), "sclip")
        x = x + blk.mlp(blk.ln_2(x))
    else:  # clearclip, ignore_residual=True
        x = custom_attn(blk.attn, blk.ln_1(x), "clearclip")
    x = x.permute(1, 0, 2)
    return (v.ln_post(x) @ v.proj)[:, 1:]


def forward_feature(model, img, text, mode):
    """SCLIP `forward_feature`: normalised patch features @ text, upsampled to the input."""
    feats = encode_image(model, img, mode)
    feats = feats / feats.norm(dim=-1, keepdim=True)
    logits = feats @ text.T
    patch = model.visual.conv1.kernel_size[0]
    h, w = img.shape[-2] // patch, img.shape[-1] // patch
    logits = logits.permute(0, 2, 1).reshape(-1, text.shape[0], h, w)
    return F.interpolate(logits, size=img.shape[-2:], mode="bilinear")


def forward_slide(model, img, text, mode, stride, crop):
    """SCLIP `forward_slide` for one image [1, 3, H, W] -> logits [1, Q, H, W]."""
    _, _, h_img, w_img = img.shape
    h_grids = max(h_img - crop + stride - 1, 0) // stride + 1
    w_grids = max(w_img - crop + stride - 1, 0) // stride + 1
    preds = img.new_zeros((1, text.shape[0], h_img, w_img))
    count_mat = img.new_zeros((1, 1, h_img, w_img))
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y1, x1 = h_idx * stride, w_idx * stride
            y2, x2 = min(y1 + crop, h_img), min(x1 + crop, w_img)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            crop_img = img[:, :, y1:y2, x1:x2]
            crop_seg_logit = forward_feature(model, crop_img, text, mode)
            preds += F.pad(
                crop_seg_logit,
                (int(x1), int(preds.shape[3] - x2), int(y1), int(preds.shape[2] - y2)),
            )
            count_mat[:, :, y1:y2, x1:x2] += 1
    return preds / count_mat


def predict(model, img, text, query_idx, mode, *, stride, crop, ori_shape, logit_scale, prob_thd):
    """SCLIP `predict` + `postprocess_result` for one image: the label map at `ori_shape`."""
    seg_logits = forward_slide(model, img, text, mode, stride, crop)
    seg_logits = F.interpolate(seg_logits, size=ori_shape, mode="bilinear")[0]
    seg_logits = seg_logits * logit_scale
    seg_logits = seg_logits.softmax(0)  # n_queries * w * h
    num_cls, num_queries = max(query_idx) + 1, len(query_idx)
    if num_cls != num_queries:
        seg_logits = seg_logits.unsqueeze(0)
        cls_index = F.one_hot(torch.tensor(query_idx))
        cls_index = cls_index.T.view(num_cls, num_queries, 1, 1)
        seg_logits = (seg_logits * cls_index).max(1)[0]
    seg_pred = seg_logits.argmax(0, keepdim=True)
    seg_pred[seg_logits.max(0, keepdim=True)[0] < prob_thd] = 0
    return seg_pred[0], seg_logits.max(0)[0]
