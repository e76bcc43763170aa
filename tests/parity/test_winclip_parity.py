"""WinCLIP's window graph and scores against anomalib's computation
(tests/parity/winclip_reference.py), in torch and exported to ONNX."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from onnx_roundtrip import assert_onnx_matches_torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from winclip_reference import WinClipReference, make_masks

from promptserve.models.clip.dense_graphs import WinCLIPVisionGraph
from promptserve.models.clip.methods.winclip import (
    prompt_ensemble,
    text_embeddings,
    winclip_outputs,
    window_indices,
)


@pytest.mark.parametrize(("grid", "scale"), [(7, 2), (7, 3), (4, 4), (5, 1)])
def test_window_indices_are_anomalibs_masks(grid, scale):
    want = make_masks((grid, grid), scale, 1).T.long()
    np.testing.assert_array_equal(window_indices(grid, scale), want.numpy())


def test_prompt_ensemble_sizes():
    normal, anomalous = prompt_ensemble("bottle")
    assert len(normal) == 7 * 21 and len(anomalous) == 4 * 21
    assert "a photo of a damaged bottle." in anomalous and "a photo of a flawless bottle." in normal


def test_winclip_matches_anomalib(tiny_model, tiny_bundle):
    from promptserve.models.clip.runtime import ClipGraphs

    tower = ClipGraphs.create("onnxruntime", tiny_bundle).text_tower
    text = text_embeddings(tower, "bottle")
    # the same text embeddings the reference computes with open_clip (encode_text, mean)
    normal, anomalous = prompt_ensemble("bottle")
    with torch.no_grad():
        ref_text = torch.stack([
            tiny_model.encode_text(open_clip.tokenize(normal)).mean(0),
            tiny_model.encode_text(open_clip.tokenize(anomalous)).mean(0),
        ])  # fmt: skip
    np.testing.assert_allclose(text, ref_text.numpy(), atol=1e-4)

    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    graph = WinCLIPVisionGraph(tiny_model, scales=(2, 3)).eval()
    with torch.no_grad():
        image, windows = graph(pixels)
    assert windows.shape == (2, 36 + 25, tiny_model.visual.output_dim)
    masks = [window_indices(7, s) for s in (2, 3)]
    scores, maps = winclip_outputs(
        image.numpy(), windows.numpy(), ref_text.numpy(), windows=masks, grid=7, image_size=224
    )
    want_scores, want_maps = WinClipReference(tiny_model, ref_text, scales=(2, 3)).forward(pixels)
    np.testing.assert_allclose(scores, want_scores.numpy(), atol=1e-5)
    assert maps.shape == (2, 224, 224) and maps.std() > 1e-5
    np.testing.assert_allclose(maps, want_maps.numpy(), atol=1e-5)


def test_window_graph_exports_to_onnx(tiny_model, tmp_path):
    g = torch.Generator().manual_seed(0)
    assert_onnx_matches_torch(
        WinCLIPVisionGraph(tiny_model, scales=(2, 3)),
        torch.randn(2, 3, 224, 224, generator=g),
        torch.randn(3, 3, 224, 224, generator=g),
        tmp_path / "winclip.onnx",
    )


def test_geometric_windows_take_their_own_patches(tiny_model):
    """One window covering the whole 7x7 grid is the whole image when windows index patches
    geometrically; anomalib's indexing (the default, kept for parity) shifts it by one token."""
    pixels = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        image, window = WinCLIPVisionGraph(tiny_model, scales=(7,), geometric_windows=True)(pixels)
        _, shifted = WinCLIPVisionGraph(tiny_model, scales=(7,))(pixels)
    np.testing.assert_allclose(window[:, 0].numpy(), image.numpy(), atol=1e-5)
    assert (shifted[:, 0] - image).abs().max() > 1e-3


def test_bundle_exports_the_winclip_graph_and_engines_run_it(tiny_spec, tiny_model, tmp_path):
    from promptserve.models.bundle import Bundle, BundleError
    from promptserve.models.clip.bundle import WinCLIPGraphSpec
    from promptserve.models.clip.export.onnx import export_bundle
    from promptserve.models.clip.runtime import ClipGraphs

    out = tmp_path / "bundle"
    export_bundle(
        tiny_spec, out, progress=False, deep_prompts=False, winclip=WinCLIPGraphSpec(scales=(2, 3))
    )
    bundle = Bundle(out)
    assert bundle.manifest.config.winclip.grid == 7 and bundle.manifest.parity["winclip"].passed
    pixels = np.random.default_rng(8).standard_normal((2, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        want = WinCLIPVisionGraph(tiny_model, scales=(2, 3))(torch.from_numpy(pixels))
    for name in ("onnxruntime", "torch"):
        image, windows = ClipGraphs.create(name, bundle).encode_windows(pixels)
        np.testing.assert_allclose(image, want[0].numpy(), atol=1e-4)
        np.testing.assert_allclose(windows, want[1].numpy(), atol=1e-4)
    plain = ClipGraphs.create("onnxruntime", Bundle(out))
    plain.bundle.manifest = plain.bundle.manifest.model_copy(
        update={"config": plain.bundle.manifest.config.model_copy(update={"winclip": None})}
    )
    with pytest.raises(BundleError, match="--winclip-scales"):
        plain.encode_windows(pixels)
