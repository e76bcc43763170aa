"""AnomalyCLIP's dense vision graph (DPAM dual paths, layer taps, interpolated positional
embedding) against the official computation (tests/parity/anomalyclip_reference.py), in torch
and exported to ONNX."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx_roundtrip import assert_onnx_matches_torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anomalyclip_reference import AnomalyCLIPVisual

from promptserve.models.clip.dense_graphs import AnomalyCLIPVisionGraph

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "anomaly-tiny-vit.json"
TAPS = (6, 12, 18, 24)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A 24-layer ViT (taps 6/12/18/24 and DPAM from layer 5 as with ViT-L/14), 14-px patches,
    trained size 56, seeded random weights."""
    from promptserve.models.clip.export.seeded import seeded_backbone

    spec = seeded_backbone(str(CONFIG), seed=0, directory=tmp_path_factory.mktemp("anomaly"))
    return spec.load().eval()


def _reference(model, pixels: torch.Tensor, dpam_layer: int):
    ref = AnomalyCLIPVisual(model)
    dpam = dpam_layer if dpam_layer > 1 else None  # test.py's DPAM_layer=None: CLIP's path
    if dpam is not None:
        ref.DAPM_replace(DPAM_layer=dpam)
    image, patches = ref(pixels, list(TAPS), DPAM_layer=dpam)
    return image.numpy(), np.stack([p[:, 1:].numpy() for p in patches], axis=1)


@pytest.mark.parametrize("size", [56, 84], ids=["trained-size", "interpolated"])
@pytest.mark.parametrize("dpam_layer", [20, 1], ids=["dpam20", "no-dpam"])
def test_graph_matches_official_forward(model, size, dpam_layer):
    pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(size))
    graph = AnomalyCLIPVisionGraph(model, image_size=size, taps=TAPS, dpam_layer=dpam_layer)
    with torch.no_grad():
        image, patches = graph(pixels)
    want_image, want_patches = _reference(model, pixels, dpam_layer)
    grid = (size // 14) ** 2
    assert patches.shape == (2, len(TAPS), grid, 32)
    np.testing.assert_allclose(image.numpy(), want_image, atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(patches.numpy(), want_patches, atol=1e-5, rtol=1e-4)


def test_dpam_changes_the_dense_tokens(model):
    """The parity above holds for both settings; check they are different computations."""
    pixels = torch.randn(1, 3, 56, 56, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        dpam = AnomalyCLIPVisionGraph(model, image_size=56, dpam_layer=20)(pixels)[1]
        plain = AnomalyCLIPVisionGraph(model, image_size=56, dpam_layer=1)(pixels)[1]
    assert torch.allclose(dpam[:, 0], plain[:, 0]) is False  # tap 6 is past the first DPAM block
    assert (dpam - plain).abs().max() > 1e-3


def test_onnx_export_matches_torch(model, tmp_path):
    g = torch.Generator().manual_seed(0)
    assert_onnx_matches_torch(
        AnomalyCLIPVisionGraph(model, image_size=84),
        torch.randn(2, 3, 84, 84, generator=g),
        torch.randn(3, 3, 84, 84, generator=g),
        tmp_path / "anomaly.onnx",
    )


def test_bad_taps_and_layers(model):
    with pytest.raises(ValueError, match="taps"):
        AnomalyCLIPVisionGraph(model, image_size=56, taps=(6, 25))
    with pytest.raises(ValueError, match="dpam_layer"):
        AnomalyCLIPVisionGraph(model, image_size=56, dpam_layer=30)


def _text_tower(model):
    """The method's text side on our prompted text graph (torch), as an engine runs it."""
    import open_clip

    from promptserve.models.clip.graphs import PromptedTextGraph
    from promptserve.models.clip.text import TextTower
    from promptserve.models.clip.tokenizer import ClipTokenizer

    graph = PromptedTextGraph(model).eval()

    def encode(emb, eot, deep):
        layers = deep.padded(graph.layers, deep.n_tokens)
        with torch.no_grad():
            return graph(
                torch.from_numpy(emb), torch.from_numpy(eot), torch.from_numpy(layers),
                torch.tensor(deep.depth),
            ).numpy()  # fmt: skip

    tokenizer = ClipTokenizer(open_clip.tokenizer.default_bpe(), 77)
    table = model.token_embedding.weight.detach().numpy()
    return TextTower(tokenizer, table, encode, truncate=True)


@pytest.mark.parametrize("size", [56, 84], ids=["trained-size", "interpolated"])
def test_anomalyclip_scores_and_maps_match_official(model, tmp_path, size):
    """Checkpoint as train.py saves it -> import -> text features, dense graph, maps and scores
    against test.py's arithmetic (scipy's gaussian_filter included)."""
    from anomalyclip_reference import PromptLearner, official_test_step

    from promptserve.models.clip.backbone import BackboneSpec
    from promptserve.models.clip.export.importers.anomalyclip import import_anomalyclip
    from promptserve.models.clip.export.seeded import seeded_backbone
    from promptserve.models.clip.methods.anomalyclip import (
        AnomalyCLIPParams,
        anomaly_outputs,
        text_features,
    )

    spec: BackboneSpec = seeded_backbone(str(CONFIG), seed=0, directory=tmp_path / "b")
    # depth 2 on the tiny 2-layer text tower: deep prompts at layer 1 (the official uses 9 of 12)
    learner = PromptLearner(model, n_ctx=12, depth=2, t_n_ctx=4, seed=1)
    torch.save({"prompt_learner": learner.state_dict()}, tmp_path / "epoch_15.pth")
    params = AnomalyCLIPParams(image_size=size, sigma=4.0)
    art = import_anomalyclip(tmp_path / "epoch_15.pth", backbone=spec, params=params)
    assert set(art.tensors) == {"ctx_pos", "ctx_neg", "compound_prompts_text"}

    pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(7))
    text = text_features(art, _text_tower(model))
    graph = AnomalyCLIPVisionGraph(model, image_size=size, taps=TAPS, dpam_layer=20)
    with torch.no_grad():
        image, patches = graph(pixels)
    scores, maps = anomaly_outputs(image.numpy(), patches.numpy(), text, image_size=size, sigma=4.0)

    # test.py runs batch_size=1: its `text_probs[:, 0, 1]` keeps only the first image of a batch
    steps = [
        official_test_step(
            model,
            learner,
            pixels[i : i + 1],
            features_list=list(TAPS),
            dpam_layer=20,
            image_size=size,
            sigma=4,
        )
        for i in range(len(pixels))
    ]
    want_scores = np.concatenate([s[0] for s in steps])
    want_maps = np.concatenate([s[1] for s in steps])
    want_text = steps[0][2]
    np.testing.assert_allclose(text, want_text, atol=1e-5)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    assert maps.shape == (2, size, size)
    np.testing.assert_allclose(maps, want_maps, atol=1e-4)
    assert maps.std() > 1e-3  # a map with structure, not a constant


@pytest.fixture(scope="module")
def anomaly_bundle(model, tmp_path_factory):
    from promptserve.models.bundle import Bundle
    from promptserve.models.clip.bundle import AnomalyGraphSpec
    from promptserve.models.clip.export.onnx import export_bundle
    from promptserve.models.clip.export.seeded import seeded_backbone

    spec = seeded_backbone(str(CONFIG), seed=0, directory=tmp_path_factory.mktemp("anomaly-b"))
    out = tmp_path_factory.mktemp("anomaly-bundle")
    export_bundle(
        spec,
        out,
        progress=False,
        deep_prompts=False,  # not needed here; saves half the export time
        anomaly=AnomalyGraphSpec(image_size=84, taps=TAPS, dpam_layer=20),
    )
    return Bundle(out)


def test_bundle_exports_the_anomaly_graph_and_engines_run_it(model, anomaly_bundle):
    from promptserve.models.clip.runtime import ClipGraphs

    m = anomaly_bundle.manifest
    assert (
        m.config.anomaly is not None
        and m.config.anomaly.grid == 6
        and m.config.anomaly.taps == TAPS
    )
    assert m.parity["anomaly"].passed
    pixels = np.random.default_rng(2).standard_normal((2, 3, 84, 84)).astype(np.float32)
    with torch.no_grad():
        want = AnomalyCLIPVisionGraph(model, image_size=84, taps=TAPS)(torch.from_numpy(pixels))
    for name in ("onnxruntime", "torch"):
        image, patches = ClipGraphs.create(name, anomaly_bundle).encode_anomaly(pixels)
        np.testing.assert_allclose(image, want[0].numpy(), atol=1e-4)
        np.testing.assert_allclose(patches, want[1].numpy(), atol=1e-4)


def test_bundle_without_anomaly_graph_says_how_to_get_one(tiny_bundle):
    from promptserve.models.bundle import Bundle, BundleError
    from promptserve.models.clip.runtime import ClipGraphs

    bundle = Bundle(tiny_bundle.dir)  # a private copy: the manifest is edited below
    engine = ClipGraphs.create("onnxruntime", bundle)
    bundle.manifest = bundle.manifest.model_copy(
        update={"config": bundle.manifest.config.model_copy(update={"anomaly": None})}
    )
    with pytest.raises(BundleError, match="--anomaly-size"):
        engine.encode_anomaly(np.zeros((1, 3, 224, 224), np.float32))
