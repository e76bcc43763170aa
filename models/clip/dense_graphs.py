"""Vision graphs with dense outputs: patch tokens from several layers, projected into the joint
embedding space, for anomaly maps (AnomalyCLIP, WinCLIP) and segmentation.

The input resolution is fixed per exported graph; when it differs from the backbone's, the
positional embedding is interpolated once here and baked into the graph.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from promptserve.models.clip.graphs import (
    Axes,
    ClipModel,
    ClipModule,
    _check_prompt_ready_vit,
    block_forward,
)
from promptserve.models.clip.methods.winclip import window_indices


def interpolated_positional_embedding(
    visual: ClipModule, image_size: int, *, mode: str = "bilinear", dino: bool = False
) -> torch.Tensor:
    """[1 + g*g, W] for a g x g patch grid at `image_size`: the grid part resized
    (align_corners=False), the class position kept. Bilinear to the new size is AnomalyCLIP's
    (`AnomalyCLIP_lib/AnomalyCLIP.py::VisionTransformer.forward`); bicubic to the new size is
    MaskCLIP's (`mmseg/models/backbones/vit.py::resize_pos_embed`); `dino=True` samples with
    DINO's scale factor (g + 0.1) / side instead of the size, as SCLIP and ClearCLIP do
    (`clip/model.py::interpolate_pos_encoding`): the same grid, slightly different values."""
    pos = visual.positional_embedding.detach()
    patch = visual.conv1.kernel_size[0]
    side, new_side = round((pos.shape[0] - 1) ** 0.5), image_size // patch
    if side == new_side:
        return pos.clone()
    grid = pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    if dino:
        factor = (new_side + 0.1) / side
        grid = F.interpolate(grid, scale_factor=(factor, factor), mode=mode)
    else:
        grid = F.interpolate(grid, (new_side, new_side), mode=mode)
    return torch.cat([pos[:1], grid.reshape(1, -1, new_side * new_side)[0].T], dim=0)


def _heads(block: ClipModule, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    attn = block.attn
    b, n, w = h.shape
    q, k, v = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (
        t.reshape(b, n, attn.num_heads, w // attn.num_heads).transpose(1, 2) for t in (q, k, v)
    )
    return q, k, v


def _merge(block: ClipModule, o: torch.Tensor) -> torch.Tensor:
    b, _, n, _ = o.shape
    return block.attn.out_proj(o.transpose(1, 2).reshape(b, n, -1))


def dpam_attention(block: ClipModule, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """AnomalyCLIP's `Attention.forward` on one normalised input: (v-v attention output, the
    block's own q-k attention output), both through the block's out projection."""
    q, k, v = _heads(block, h)
    original = F.scaled_dot_product_attention(q, k, v)
    vv = F.scaled_dot_product_attention(v, v, v)
    return _merge(block, vv), _merge(block, original)


class AnomalyCLIPVisionGraph(nn.Module):
    """pixel_values [B, 3, S, S] -> image_embeds [B, E], patch_embeds [B, taps, g*g, E].

    Follows zqhang/AnomalyCLIP `AnomalyCLIP_lib/AnomalyCLIP.py` (`VisionTransformer.forward`,
    `Transformer.AnomalyCLIP_forward`, `ResidualAttentionBlock.forward`, `Attention`) with
    `DAPM_replace(DPAM_layer)`: the last `dpam_layer - 1` blocks run two paths. The original
    path is CLIP's block; the DPAM path adds each block's v-v self-attention output, computed
    from the *original* path's normalised tokens, and skips the feed-forward. Tapped layers
    (1-based, `taps`) give the DPAM path's tokens where it exists, else the plain tokens, each
    through `ln_post` and `proj`. Quirk kept: `image_embeds` is the original path's class token
    times `proj` *without* `ln_post`, as the official `encode_image` returns it.
    """

    input_names: ClassVar[tuple[str, ...]] = ("pixel_values",)
    output_names: ClassVar[tuple[str, ...]] = ("image_embeds", "patch_embeds")
    dynamic_axes: ClassVar[Axes] = {"pixel_values": {0: "batch"}}
    positional_embedding: torch.Tensor  # buffer, interpolated to image_size

    def __init__(
        self,
        clip: ClipModel,
        *,
        image_size: int,
        taps: tuple[int, ...] = (6, 12, 18, 24),
        dpam_layer: int = 20,
    ) -> None:
        super().__init__()
        _check_prompt_ready_vit(clip.visual)
        self.visual = clip.visual
        layers = len(self.visual.transformer.resblocks)
        if not taps or min(taps) < 1 or max(taps) > layers:
            raise ValueError(f"taps {taps} must be layers within 1..{layers}")
        if not 1 <= dpam_layer <= layers + 1:
            raise ValueError(f"dpam_layer {dpam_layer} must be within 1..{layers + 1}")
        self.taps = tuple(taps)
        self.image_size = image_size
        self.first_dual = layers - (dpam_layer - 1)  # 0-based index of the first dual block
        self.register_buffer(
            "positional_embedding",
            interpolated_positional_embedding(self.visual, image_size),
            persistent=False,
        )

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = self.visual
        x = v.conv1(pixel_values).flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = v.ln_pre(x)
        dpam: torch.Tensor | None = None
        tapped = []
        for i, block in enumerate(v.transformer.resblocks):
            if i < self.first_dual:
                x = block_forward(block, x, None)
            else:
                vv, original = dpam_attention(block, block.ln_1(x))
                dpam = (x if dpam is None else dpam) + block.ls_1(vv)
                x = x + block.ls_1(original)
                x = x + block.ls_2(block.mlp(block.ln_2(x)))
            if i + 1 in self.taps:
                tapped.append(x if dpam is None else dpam)
        patches = torch.stack([v.ln_post(t[:, 1:]) @ v.proj for t in tapped], dim=1)
        return x[:, 0] @ v.proj, patches


class WinCLIPVisionGraph(nn.Module):
    """pixel_values [B, 3, S, S] -> image_embeds [B, E], window_embeds [B, windows, E].

    Follows anomalib `models/image/winclip/torch_model.py::WinClipModel.encode_image`: every
    window's tokens (the class token plus the window's patch tokens, taken from the feature map
    after the positional embedding) go through `ln_pre`, the whole transformer, `ln_post` and
    `proj` as a short sequence of their own; windows of all `scales` are concatenated in scale
    order. All window passes of a batch run as one batched transformer call per scale.

    Quirk kept by default: anomalib's `_get_window_embeddings` selects feature-map tokens with
    0-based *patch* indices although token 0 is the class token, so each window takes the
    patches one raster position before it (and the class token twice for the window at the
    origin). `geometric_windows=True` takes the window's own patches instead.
    """

    input_names: ClassVar[tuple[str, ...]] = ("pixel_values",)
    output_names: ClassVar[tuple[str, ...]] = ("image_embeds", "window_embeds")
    dynamic_axes: ClassVar[Axes] = {"pixel_values": {0: "batch"}}

    def __init__(
        self, clip: ClipModel, *, scales: tuple[int, ...] = (2, 3), geometric_windows: bool = False
    ) -> None:
        super().__init__()
        _check_prompt_ready_vit(clip.visual)
        self.visual = clip.visual
        self.grid = round((self.visual.positional_embedding.shape[0] - 1) ** 0.5)
        self.scales = tuple(scales)
        for scale in self.scales:
            w = torch.from_numpy(window_indices(self.grid, scale))
            tokens = w + 1 if geometric_windows else w  # token 0 is the class token
            with_cls = torch.cat([torch.zeros(len(w), 1, dtype=torch.long), tokens], dim=1)
            self.register_buffer(f"windows_{scale}", with_cls, persistent=False)

    def _encode(self, tokens: torch.Tensor) -> torch.Tensor:
        v = self.visual
        x = v.ln_pre(tokens)
        for block in v.transformer.resblocks:
            x = block_forward(block, x, None)
        return v.ln_post(x[:, 0]) @ v.proj

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = self.visual
        x = v.conv1(pixel_values).flatten(2).transpose(1, 2)
        b = x.shape[0]
        cls = v.class_embedding.to(x.dtype).expand(b, 1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        windows = []
        for scale in self.scales:
            idx = getattr(self, f"windows_{scale}")  # [n, s*s + 1]
            tokens = x[:, idx.reshape(-1)].reshape(b * idx.shape[0], idx.shape[1], -1)
            windows.append(self._encode(tokens).reshape(b, idx.shape[0], -1))
        return self._encode(x), torch.cat(windows, dim=1)


SEGMENT_METHODS = ("maskclip", "sclip", "clearclip")


class SegmentVisionGraph(nn.Module):
    """pixel_values [B, 3, S, S] -> patch_embeds [B, g*g, E]: dense features for open-vocabulary
    segmentation, one training-free change to the last block per method, then `ln_post` and
    `proj` on every patch token (the 1x1 classifier is the text features, applied later).

    - `maskclip` (chongzhou96/MaskCLIP `mmseg/models/backbones/vit.py::TransformerEncoderLayer.
      forward(return_qkv=True)`): no attention; the value path `out_proj(v(ln_1 x))` replaces
      it, the residual and the feed-forward are kept.
    - `sclip` (wangf3014/SCLIP `clip/model.py::custom_attn(csa=True)`): correlative
      self-attention softmax(q q^T s) + softmax(k k^T s) on v per head, residual and
      feed-forward kept.
    - `clearclip` (mc-lan/ClearCLIP `open_clip/transformer.py::custom_attn('ClearCLIP')` with
      `ignore_residual=True`): q-q attention on v per head, then no residual, no feed-forward.

    The class token takes part in the attention, as in the official code. The positional
    embedding is interpolated to S as each method does, and baked in.
    """

    input_names: ClassVar[tuple[str, ...]] = ("pixel_values",)
    output_names: ClassVar[tuple[str, ...]] = ("patch_embeds",)
    dynamic_axes: ClassVar[Axes] = {"pixel_values": {0: "batch"}}
    positional_embedding: torch.Tensor  # buffer, interpolated to image_size

    def __init__(self, clip: ClipModel, *, method: str, image_size: int) -> None:
        super().__init__()
        if method not in SEGMENT_METHODS:
            raise ValueError(f"unknown segmentation method {method!r}; known: {SEGMENT_METHODS}")
        _check_prompt_ready_vit(clip.visual)
        self.visual = clip.visual
        self.method = method
        self.image_size = image_size
        pos = interpolated_positional_embedding(
            self.visual, image_size, mode="bicubic", dino=method != "maskclip"
        )
        self.register_buffer("positional_embedding", pos, persistent=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        v = self.visual
        x = v.conv1(pixel_values).flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = v.ln_pre(x)
        *blocks, last = v.transformer.resblocks
        for block in blocks:
            x = block_forward(block, x, None)
        q, k, vals = _heads(last, last.ln_1(x))
        if self.method == "maskclip":
            x = x + last.ls_1(_merge(last, vals))
        elif self.method == "sclip":
            attended = F.scaled_dot_product_attention(q, q, vals)
            attended = attended + F.scaled_dot_product_attention(k, k, vals)
            x = x + last.ls_1(_merge(last, attended))
        else:  # clearclip: the attention output alone
            x = _merge(last, F.scaled_dot_product_attention(q, q, vals))
        if self.method != "clearclip":
            x = x + last.ls_2(last.mlp(last.ln_2(x)))
        return v.ln_post(x[:, 1:]) @ v.proj
