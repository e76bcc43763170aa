"""The torch modules that become the bundle's graphs, shared by export and the torch engine.

The text graph starts from token *embeddings* rather than token ids, so learned context vectors
(CoOp and later methods) are encoded by the same exported graph, at registration, without
re-export. It ends at the EOT position given as an input, which is where CLIP pools.
"""

from __future__ import annotations

import torch
from torch import nn


class VisionGraph(nn.Module):
    """pixel_values [B, 3, H, W] -> image_embeds [B, E] (unnormalised, as CLIP's encode_image)."""

    input_names = ("pixel_values",)
    output_names = ("image_embeds",)

    def __init__(self, clip: nn.Module) -> None:
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

    input_names = ("token_embeddings", "eot_index")
    output_names = ("text_embeds",)

    def __init__(self, clip: nn.Module) -> None:
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
        x = self.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot_index]
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(x)
        return x @ self.text_projection
