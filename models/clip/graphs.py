"""The torch modules that become the bundle's graphs, shared by export and the torch engine.

The text graph starts from token *embeddings* rather than token ids, so learned context vectors
(CoOp and later methods) are encoded by the same exported graph, at registration, without
re-export. It ends at the EOT position given as an input, which is where CLIP pools.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

# input name -> {axis: symbolic dim name}; export gives each name its bounds (models/clip/export/onnx.py)
Axes = dict[str, dict[int, str]]

# open_clip's CLIP and its submodules (vision tower, residual blocks, attention) hold their parts
# as plain attributes, which torch's stubs type as `Tensor | Module`: they are typed as Any here.
ClipModel = Any  # open_clip.CLIP: its submodules are untyped attributes
ClipModule = Any  # a submodule of open_clip.CLIP (VisionTransformer, ResidualAttentionBlock)


class VisionGraph(nn.Module):
    """pixel_values [B, 3, H, W] -> image_embeds [B, E] (unnormalised, as CLIP's encode_image)."""

    input_names: ClassVar[tuple[str, ...]] = ("pixel_values",)
    output_names: ClassVar[tuple[str, ...]] = ("image_embeds",)
    dynamic_axes: ClassVar[Axes] = {"pixel_values": {0: "batch"}}

    def __init__(self, clip: ClipModel) -> None:
        super().__init__()
        self.visual = clip.visual

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.visual(pixel_values)


class TextGraph(nn.Module):
    """token_embeddings [N, L, D], eot_index [N] -> text_embeds [N, E] (unnormalised), for any
    L from max(eot_index) + 1 up to the context length.

    Mirrors open_clip `model.py::CLIP.encode_text` after the token-embedding lookup, and the
    `TextEncoder` of KaiyangZhou/CoOp `trainers/coop.py`.
    """

    input_names: ClassVar[tuple[str, ...]] = ("token_embeddings", "eot_index")
    output_names: ClassVar[tuple[str, ...]] = ("text_embeds",)
    dynamic_axes: ClassVar[Axes] = {
        "token_embeddings": {0: "batch", 1: "seq"},
        "eot_index": {0: "batch"},
    }
    attn_mask: torch.Tensor  # buffer

    def __init__(self, clip: ClipModel) -> None:
        super().__init__()
        self.transformer = clip.transformer
        self.positional_embedding = clip.positional_embedding
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.register_buffer("attn_mask", clip.attn_mask, persistent=False)

    def forward(self, token_embeddings: torch.Tensor, eot_index: torch.Tensor) -> torch.Tensor:
        # Sequences may be cut after their last EOT: attention is causal, so positions after
        # the EOT never reach it, and a shorter L is the same computation with less work.
        length = token_embeddings.shape[1]
        x = token_embeddings + self.positional_embedding[:length]
        x = self.transformer(x, attn_mask=self.attn_mask[:length, :length])
        return self._pool(x, eot_index)

    def _pool(self, x: torch.Tensor, eot_index: torch.Tensor) -> torch.Tensor:
        """ln_final, the features at each sequence's EOT, text projection."""
        x = self.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot_index]
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(x)
        return x @ self.text_projection


def block_forward(
    block: ClipModule, x: torch.Tensor, attn_bias: torch.Tensor | None
) -> torch.Tensor:
    """open_clip `ResidualAttentionBlock.forward` with the attention written out.

    `nn.MultiheadAttention` takes one mask shared by the batch; deep-prompt graphs need a
    per-sample key mask (unused prompt slots), given here as an additive bias broadcastable to
    [B, heads, N, N].
    """
    attn = block.attn
    h = block.ln_1(x)
    b, n, w = h.shape
    heads = attn.num_heads
    q, k, v = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(b, n, heads, w // heads).transpose(1, 2) for t in (q, k, v))
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)
    o = attn.out_proj(o.transpose(1, 2).reshape(b, n, w))
    x = x + block.ls_1(o)
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def _check_prompt_ready_vit(visual: ClipModule) -> None:
    """Deep prompts follow CLIP's ViT: class-token pooling, no attention pool, no patch drop."""
    problems = [
        name
        for name, bad in (
            ("not a ViT", not hasattr(visual, "conv1") or not hasattr(visual, "transformer")),
            ("attention pooling", getattr(visual, "attn_pool", None) is not None),
            ("pooling other than the class token", getattr(visual, "pool_type", "tok") != "tok"),
            ("layer norm after pooling", getattr(visual, "final_ln_after_pool", False)),
        )
        if bad
    ]
    if problems:
        raise NotImplementedError(
            "deep visual prompts (MaPLe, IVLP) need a CLIP ViT with class-token pooling; this "
            f"vision tower has {', '.join(problems)}"
        )


class PromptedVisionGraph(nn.Module):
    """pixel_values [B, 3, H, W], visual_prompts [B, layers, P, W], prompt_tokens [B],
    prompt_depth [B] -> image_embeds [B, E].

    Per sample, `visual_prompts[:, i]` are the prompt tokens entering layer i: entry 0 is
    appended after the patch tokens (after the positional embedding, before `ln_pre`), entry i
    replaces the prompt slots at the input of layer i for 0 < i < prompt_depth, and deeper
    layers carry them on. This is `VisionTransformer_MaPLe.forward` with
    `ResidualAttentionBlock_MaPLe` and `VisionTransformer` with `ResidualAttentionBlock_IVLP`
    of muzairkhattak/multimodal-prompt-learning `clip/model.py`, which compute the same thing.

    Only the first `prompt_tokens` slots of a sample are attended to (the rest are masked as
    keys), so one batch holds artifacts with different prompt lengths and depths, and a plain
    CLIP sample (prompt_tokens = 0) computes exactly CLIP's forward.
    """

    input_names: ClassVar[tuple[str, ...]] = (
        "pixel_values",
        "visual_prompts",
        "prompt_tokens",
        "prompt_depth",
    )
    output_names: ClassVar[tuple[str, ...]] = ("image_embeds",)
    dynamic_axes: ClassVar[Axes] = {
        "pixel_values": {0: "batch"},
        "visual_prompts": {0: "batch", 2: "prompt"},
        "prompt_tokens": {0: "batch"},
        "prompt_depth": {0: "batch"},
    }

    def __init__(self, clip: ClipModel) -> None:
        super().__init__()
        _check_prompt_ready_vit(clip.visual)
        self.visual = clip.visual

    @property
    def layers(self) -> int:
        return len(self.visual.transformer.resblocks)

    def forward(
        self,
        pixel_values: torch.Tensor,
        visual_prompts: torch.Tensor,
        prompt_tokens: torch.Tensor,
        prompt_depth: torch.Tensor,
    ) -> torch.Tensor:
        v = self.visual
        x = v.conv1(pixel_values).flatten(2).transpose(1, 2)
        b = x.shape[0]
        cls = v.class_embedding.to(x.dtype).expand(b, 1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        n_image = x.shape[1]
        slots = visual_prompts.shape[2]
        x = v.ln_pre(torch.cat([x, visual_prompts[:, 0].to(x.dtype)], dim=1))

        unused = torch.arange(slots, device=x.device)[None, :] >= prompt_tokens[:, None]
        prompt_bias = torch.zeros(unused.shape, dtype=x.dtype, device=x.device).masked_fill(
            unused, torch.finfo(x.dtype).min
        )
        image_bias = torch.zeros((b, n_image), dtype=x.dtype, device=x.device)
        bias = torch.cat([image_bias, prompt_bias], dim=1)[:, None, None, :]

        for i, block in enumerate(v.transformer.resblocks):
            if i > 0:
                replace = (prompt_depth > i)[:, None, None]
                tail = torch.where(replace, visual_prompts[:, i].to(x.dtype), x[:, n_image:])
                x = torch.cat([x[:, :n_image], tail], dim=1)
            x = block_forward(block, x, bias)
        x = v.ln_post(x[:, 0])
        return x @ v.proj if v.proj is not None else x


class PromptedTextGraph(TextGraph):
    """token_embeddings [N, L, D], eot_index [N], deep_prompts [layers, P, D], prompt_depth []
    -> text_embeds [N, E].

    One artifact per call (its prompts are shared by every sequence): entry i of
    `deep_prompts` replaces positions 1..P (after SOS) at the input of layer i for
    i < prompt_depth; entry 0 before the positional embedding is added, as the prompt learner's
    context is. Follows `TextEncoder` of multimodal-prompt-learning `trainers/maple.py` with
    `ResidualAttentionBlock_MaPLe` / `ResidualAttentionBlock_IVLP` (`text_layer=True`) of its
    `clip/model.py`.
    """

    input_names: ClassVar[tuple[str, ...]] = (
        "token_embeddings",
        "eot_index",
        "deep_prompts",
        "prompt_depth",
    )
    output_names: ClassVar[tuple[str, ...]] = ("text_embeds",)
    dynamic_axes: ClassVar[Axes] = {
        "token_embeddings": {0: "batch", 1: "seq"},
        "eot_index": {0: "batch"},
        "deep_prompts": {1: "prompt"},
        "prompt_depth": {},
    }

    @property
    def layers(self) -> int:
        return len(self.transformer.resblocks)

    # A graph with two more inputs than TextGraph's: it shares the text tower and the pooling,
    # not the call signature (export and the runtime call each graph with its own input_names).
    def forward(  # type: ignore[override]
        self,
        token_embeddings: torch.Tensor,
        eot_index: torch.Tensor,
        deep_prompts: torch.Tensor,
        prompt_depth: torch.Tensor,
    ) -> torch.Tensor:
        n, length, _ = token_embeddings.shape
        slots = deep_prompts.shape[1]

        def splice(x: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
            middle = prompts.to(x.dtype)[None].expand(n, -1, -1)
            return torch.cat([x[:, :1], middle, x[:, 1 + slots :]], dim=1)

        x = splice(token_embeddings, deep_prompts[0]) + self.positional_embedding[:length]
        bias = self.attn_mask[:length, :length].to(x.dtype)
        for i, block in enumerate(self.transformer.resblocks):
            if i > 0:
                x = torch.where(prompt_depth > i, splice(x, deep_prompts[i]), x)
            x = block_forward(block, x, bias)
        return self._pool(x, eot_index)
