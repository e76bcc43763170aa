"""WinCLIP (zero-shot) as anomalib computes it, written from its code, independent of
promptserve: `models/image/winclip/torch_model.py` (`encode_image` with the feature-map hook,
`_get_window_embeddings`, `_compute_zero_shot_scores`, `forward`, `collect_text_embeddings`) and
`utils.py` (`make_masks`, `class_scores`, `harmonic_aggregation`, `cosine_similarity`).

Adapted to open_clip 3's batch-first transformer: anomalib permutes to LND around
`visual.transformer`, written for open_clip versions whose transformer took LND; here the
window tokens stay NLD, which is the same computation on this open_clip.
"""

from __future__ import annotations

import torch
from torch import nn


def make_masks(grid_size, kernel_size, stride=1):
    height, width = grid_size
    grid = torch.arange(height * width).reshape(1, height, width)
    return nn.functional.unfold(grid.float(), kernel_size=kernel_size, stride=stride).int()


def cosine_similarity(input1, input2):
    ndim = input1.ndim
    input1 = input1.unsqueeze(0) if input1.ndim == 2 else input1
    input2 = input2.repeat(input1.shape[0], 1, 1) if input2.ndim == 2 else input2
    input1_norm = nn.functional.normalize(input1, p=2, dim=-1)
    input2_norm = nn.functional.normalize(input2, p=2, dim=-1)
    similarity = torch.bmm(input1_norm, input2_norm.transpose(-2, -1))
    if ndim == 2:
        return similarity.squeeze(0)
    return similarity


def class_scores(image_embeddings, text_embeddings, temperature=1.0, target_class=None):
    scores = (cosine_similarity(image_embeddings, text_embeddings) / temperature).softmax(dim=-1)
    if target_class is not None:
        return scores[..., target_class]
    return scores


def harmonic_aggregation(window_scores, output_size, masks):
    batch_size = window_scores.shape[0]
    height, width = output_size
    scores = []
    for idx in range(height * width):
        patch_mask = torch.any(masks == idx, dim=0)
        scores.append(sum(patch_mask) / (1 / window_scores.T[patch_mask]).sum(dim=0))
    return torch.stack(scores).T.reshape(batch_size, height, width).nan_to_num(posinf=0.0)


class WinClipReference:
    def __init__(self, clip, text_embeddings, scales=(2, 3)):
        self.clip, self.scales, self.temperature = clip, scales, 0.07
        side = round((clip.visual.positional_embedding.shape[0] - 1) ** 0.5)
        self.grid_size = (side, side)
        self.masks = [make_masks(self.grid_size, scale, 1) for scale in scales]
        self.text_embeddings = text_embeddings

    def _get_window_embeddings(self, feature_map, masks):
        batch_size = feature_map.shape[0]
        n_masks = masks.shape[1]
        class_index = torch.zeros(1, n_masks, dtype=int)
        masks = torch.cat((class_index, masks)).T
        masked = torch.cat([torch.index_select(feature_map, 1, mask) for mask in masks])
        masked = self.clip.visual.patch_dropout(masked)
        masked = self.clip.visual.ln_pre(masked)
        masked = self.clip.visual.transformer(masked)  # NLD on open_clip 3 (see module doc)
        masked = self.clip.visual.ln_post(masked)
        pooled, _ = self.clip.visual._global_pool(masked)
        if self.clip.visual.proj is not None:
            pooled = pooled @ self.clip.visual.proj
        return pooled.reshape((n_masks, batch_size, -1)).permute(1, 0, 2)

    @torch.no_grad()
    def forward(self, batch):
        outputs = {}

        def hook(_model, inputs, _outputs):
            outputs["feature_map"] = inputs[0].detach()

        handle = self.clip.visual.patch_dropout.register_forward_hook(hook)
        try:
            image_embeddings = self.clip.encode_image(batch)
        finally:
            handle.remove()
        window_embeddings = [
            self._get_window_embeddings(outputs["feature_map"], m) for m in self.masks
        ]
        image_scores = class_scores(
            image_embeddings, self.text_embeddings, self.temperature, target_class=1
        )
        multiscale_scores = [image_scores.view(-1, 1, 1).repeat(1, *self.grid_size)]
        for window_embedding, mask in zip(window_embeddings, self.masks, strict=True):
            scores = class_scores(
                window_embedding, self.text_embeddings, self.temperature, target_class=1
            )
            multiscale_scores.append(harmonic_aggregation(scores, self.grid_size, mask))
        multiscale = (len(self.scales) + 1) / (1 / torch.stack(multiscale_scores)).sum(dim=0)
        pixel_scores = nn.functional.interpolate(
            multiscale.unsqueeze(1), size=batch.shape[-2:], mode="bilinear"
        )
        return image_scores, pixel_scores.squeeze(1)
