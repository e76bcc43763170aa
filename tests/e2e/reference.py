"""Direct torch computations of the served methods, independent of promptserve's serving code:
open_clip's own transform, tokenizer and encode_* calls on the same weights."""

from __future__ import annotations

import io

import numpy as np
import open_clip
import torch
from PIL import Image


def preprocess(model, blobs: list[bytes]) -> torch.Tensor:
    """open_clip's eval transform, batched."""
    cfg = model.visual.preprocess_cfg
    transform = open_clip.image_transform(
        model.visual.image_size,
        is_train=False,
        mean=cfg["mean"],
        std=cfg["std"],
        interpolation=cfg["interpolation"],
    )
    return torch.stack([transform(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs])


def image_features(model, blobs: list[bytes]) -> torch.Tensor:
    """open_clip's eval transform + encode_image(normalize=True)."""
    with torch.no_grad():
        return model.encode_image(preprocess(model, blobs), normalize=True)


def template_classifier(model, classnames: list[str], templates: list[str]) -> torch.Tensor:
    """open_clip `zero_shot_classifier.py::build_zero_shot_classifier`, written out."""
    rows = []
    with torch.no_grad():
        for name in classnames:
            emb = model.encode_text(
                open_clip.tokenize([t.format(name) for t in templates]), normalize=True
            )
            rows.append(torch.nn.functional.normalize(emb.mean(dim=0), dim=-1))
    return torch.stack(rows)


def logits(model, blobs: list[bytes], class_features: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return (model.logit_scale.exp() * image_features(model, blobs) @ class_features.T).numpy()
