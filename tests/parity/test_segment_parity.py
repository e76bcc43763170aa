"""MaskCLIP, SCLIP and ClearCLIP dense features and SCLIP's sliding-window labelling against
references written from the official code (tests/parity/segment_reference.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx_roundtrip import assert_onnx_matches_torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import segment_reference as ref

from promptserve.models.clip.dense_graphs import SEGMENT_METHODS, SegmentVisionGraph
from promptserve.models.clip.methods.segment import (
    class_scores,
    resized_size,
    segment,
    window_boxes,
)


def _pixels(seed: int, h: int, w: int, n: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("size", [224, 320], ids=["native", "interpolated"])
@pytest.mark.parametrize("method", SEGMENT_METHODS)
def test_graph_matches_official_forward(tiny_model, method, size):
    pixels = _pixels(1, size, size, n=2)
    with torch.no_grad():
        got = SegmentVisionGraph(tiny_model, method=method, image_size=size).eval()(pixels)
        want = ref.encode_image(tiny_model, pixels, method)
    assert got.shape == (2, (size // 32) ** 2, tiny_model.visual.output_dim)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)


def test_methods_differ(tiny_model):
    pixels = _pixels(2, 224, 224)
    with torch.no_grad():
        outs = [
            SegmentVisionGraph(tiny_model, method=m, image_size=224)(pixels)
            for m in SEGMENT_METHODS
        ]
    for i in range(len(outs)):
        for j in range(i + 1, len(outs)):
            assert (outs[i] - outs[j]).abs().max() > 1e-3


@pytest.mark.parametrize("method", SEGMENT_METHODS)
def test_onnx_export_matches_torch(tiny_model, method, tmp_path):
    assert_onnx_matches_torch(
        SegmentVisionGraph(tiny_model, method=method, image_size=224),
        _pixels(3, 224, 224, n=2),
        _pixels(4, 224, 224, n=3),
        tmp_path / f"{method}.onnx",
    )


@pytest.mark.parametrize(
    ("resized", "original"),
    [((256, 350), (300, 410)), ((224, 224), (180, 200)), ((450, 260), (450, 260))],
    ids=["slide", "one-window", "tall"],
)
@pytest.mark.parametrize("method", ["sclip", "clearclip"])
def test_sliding_window_labels_match_official(tiny_model, method, resized, original):
    """The windows through our graph, stitched and labelled in numpy, against SCLIP's
    forward_slide + postprocess_result; several names per class and a probability threshold."""
    g = torch.Generator().manual_seed(5)
    text = torch.randn(7, tiny_model.visual.output_dim, generator=g)
    text = text / text.norm(dim=-1, keepdim=True)
    query_idx = [0, 0, 1, 2, 2, 2, 3]
    img = _pixels(6, *resized)
    crop, stride, scale, thd = 224, 112, 40.0, 0.3
    with torch.no_grad():
        want_labels, want_conf = ref.predict(
            tiny_model, img, text, query_idx, method, stride=stride, crop=crop,
            ori_shape=original, logit_scale=scale, prob_thd=thd,
        )  # fmt: skip
        boxes = window_boxes(*resized, crop, stride)
        windows = torch.cat([img[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in boxes])
        feats = SegmentVisionGraph(tiny_model, method=method, image_size=crop)(windows)
    got = segment(
        feats.numpy(), boxes, text.numpy(), name_class=np.array(query_idx), crop=crop,
        resized=resized, original=original, logit_scale=scale, prob_threshold=thd, chunk=3,
    )  # fmt: skip
    assert got.labels.shape == original
    np.testing.assert_allclose(got.confidence, want_conf.numpy(), atol=1e-4)  # x logit scale 40
    agree = (got.labels == want_labels.numpy()).mean()
    assert agree > 0.999, agree  # ties within float noise only
    assert len(np.unique(got.labels)) > 1


def test_one_window_equals_the_direct_computation(tiny_model):
    """An image the size of the crop is one window: stitching adds nothing to the direct
    forward_feature + upsample + softmax."""
    text = torch.nn.functional.normalize(
        torch.randn(4, 64, generator=torch.Generator().manual_seed(7)), dim=-1
    )
    img = _pixels(8, 224, 224)
    with torch.no_grad():
        direct = ref.forward_feature(tiny_model, img, text, "sclip")[0] * 40
        feats = SegmentVisionGraph(tiny_model, method="sclip", image_size=224)(img)
    got = segment(
        feats.numpy(), [(0, 224, 0, 224)], text.numpy(), name_class=np.arange(4), crop=224,
        resized=(224, 224), original=(224, 224), logit_scale=40.0,
    )  # fmt: skip
    probs = direct.softmax(0)
    np.testing.assert_allclose(got.confidence, probs.max(0)[0].numpy(), atol=1e-5)
    assert (got.labels == probs.argmax(0).numpy()).mean() > 0.999


def test_chunking_does_not_change_the_result(tiny_model):
    text = torch.nn.functional.normalize(
        torch.randn(20, 64, generator=torch.Generator().manual_seed(9)), dim=-1
    )
    img = _pixels(10, 300, 240)
    boxes = window_boxes(300, 240, 224, 112)
    with torch.no_grad():
        windows = torch.cat([img[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in boxes])
        feats = SegmentVisionGraph(tiny_model, method="sclip", image_size=224)(windows).numpy()
    kwargs = dict(
        name_class=np.arange(20),
        crop=224,
        resized=(300, 240),
        original=(150, 120),
        logit_scale=40.0,
    )
    a = segment(feats, boxes, text.numpy(), chunk=20, **kwargs)
    b = segment(feats, boxes, text.numpy(), chunk=3, **kwargs)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-6)
    area, conf = class_scores(a, 20)
    assert area.sum() == pytest.approx(1.0) and np.all((conf >= 0) & (conf <= 1))
    for c in np.unique(a.labels):
        assert conf[c] == pytest.approx(a.confidence[a.labels == c].mean(), abs=1e-5)


def test_resize_and_window_placement():
    assert resized_size(480, 640, 336) == (336, 448)
    assert resized_size(100, 5000, 336) == (41, 2048)  # the long side is capped at 2048
    boxes = window_boxes(336, 448, 224, 112)
    assert boxes[0] == (0, 224, 0, 224) and boxes[-1] == (112, 336, 224, 448)
    assert len(boxes) == 2 * 3
    cover = np.zeros((336, 448), int)
    for y1, y2, x1, x2 in boxes:
        cover[y1:y2, x1:x2] += 1
    assert cover.min() >= 1
    assert window_boxes(100, 150, 224, 112) == [(0, 100, 0, 150)]  # smaller than one crop
