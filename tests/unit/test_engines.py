"""Export parity and engine agreement: ONNX Runtime and torch give the same outputs."""

from __future__ import annotations

import numpy as np
import pytest

import promptserve.models.clip.bundle as clip_bundle
from promptserve.exporters.onnx import ExportParityError
from promptserve.models.bundle import Bundle
from promptserve.models.clip.export.onnx import export_bundle
from promptserve.models.clip.runtime import ClipGraphs
from promptserve.serving.engines.base import EngineOptions


def test_bundle_records_passing_parity(tiny_bundle):
    m = tiny_bundle.manifest
    assert set(m.parity) == {
        "vision", "text", "vision_prompted", "text_prompted", "anomaly", "winclip",
        "segment_sclip", "segment_clearclip", "segment_maskclip",
    }  # fmt: skip
    for p in m.parity.values():
        assert p.passed and p.max_abs_diff <= 1e-4 and p.min_cosine > 0.99999
    assert (
        m.config.preprocess.size == 224 and m.config.embed_dim == 64 and m.config.text_width == 64
    )
    assert clip_bundle.token_embedding(tiny_bundle).shape == (49408, 64)


def test_bundle_records_each_graphs_signature(tiny_bundle, tmp_path):
    """bundle.json keeps every graph's inputs and outputs as the file declares them, so servers
    that run graphs elsewhere (Triton) need not load them; bundles without it read the file."""
    import json
    import shutil

    from promptserve.models.bundle import BUNDLE_FILE, read_signature

    for name in tiny_bundle.manifest.graphs:
        info = tiny_bundle.manifest.graphs[name]
        assert info.input_specs is not None and info.output_specs is not None
        assert tiny_bundle.signature(name) == read_signature(tiny_bundle.graph_path(name))
        assert [t.name for t in info.input_specs] == info.inputs
    vision_in, _ = tiny_bundle.signature("vision")
    assert vision_in[0].type == "tensor(float)" and vision_in[0].shape == ["batch", 3, 224, 224]
    old = tmp_path / "old"  # as exported before the specs were written
    shutil.copytree(tiny_bundle.dir, old)
    raw = json.loads((old / BUNDLE_FILE).read_text())
    for graph in raw["graphs"].values():
        graph.pop("input_specs")
        graph.pop("output_specs")
    (old / BUNDLE_FILE).write_text(json.dumps(raw))
    assert Bundle(old).signature("text") == tiny_bundle.signature("text")


def test_engines_agree(tiny_bundle):
    ort = ClipGraphs.create("onnxruntime", tiny_bundle, EngineOptions(threads=1))
    pt = ClipGraphs.create("torch", tiny_bundle)
    rng = np.random.default_rng(0)
    for batch in (1, 5):
        x = rng.standard_normal((batch, 3, 224, 224), dtype=np.float32)
        np.testing.assert_allclose(ort.encode_image(x), pt.encode_image(x), atol=1e-4)
    ids = clip_bundle.tokenizer(tiny_bundle)(
        ["a photo of a dog.", "X X X X a cat.", "a longer sentence about the sea."]
    )
    emb = clip_bundle.token_embedding(tiny_bundle)[ids]
    np.testing.assert_allclose(
        ort.encode_text(emb, ids.argmax(-1)), pt.encode_text(emb, ids.argmax(-1)), atol=1e-4
    )


def test_export_fails_loudly_above_tolerance(tiny_spec, tmp_path):
    with pytest.raises(ExportParityError, match="differs from torch above"):
        export_bundle(tiny_spec, tmp_path, tolerance=0.0, progress=False)
    # The report is still written, so the user can see how far off it was.
    assert Bundle(tmp_path).manifest.parity["vision"].passed is False


def test_unknown_engine_and_provider():
    with pytest.raises(ValueError, match="available"):
        ClipGraphs.create("tensorflow", None)  # type: ignore[arg-type]


def test_missing_execution_provider_is_explained(tiny_bundle):
    with pytest.raises(ValueError, match="not available"):
        ClipGraphs.create(
            "onnxruntime", tiny_bundle, EngineOptions(providers=["TensorrtExecutionProvider"])
        )


@pytest.mark.parametrize("engine_name", ["onnxruntime", "torch"])
def test_text_sequences_cut_after_eot_give_the_same_features(tiny_bundle, engine_name):
    """Causal attention: positions after a sequence's EOT never reach it, so the tower may cut
    chunks after their longest EOT (and group by length) without changing any feature."""
    engine = ClipGraphs.create(engine_name, tiny_bundle)
    tower = engine.text_tower
    assert tiny_bundle.manifest.config.text_truncation and tower.truncate
    texts = ["a cat.", "X X X X a golden retriever.", "a " + "very " * 30 + "long caption.", "dog"]
    texts = texts * 3  # more than one chunk below
    tower.chunk_size = 5
    ids = clip_bundle.tokenizer(tiny_bundle)(texts)
    emb = tower.embed_tokens(ids)
    full = engine.encode_text(emb, ids.argmax(-1))  # every sequence at the full 77 tokens
    np.testing.assert_allclose(tower.encode(emb, ids.argmax(-1)), full, atol=1e-5)
    calls = []
    real = tower._encode_fn
    tower._encode_fn = lambda e, i, d: (calls.append(e.shape[1]), real(e, i, d))[1]
    tower.encode(emb, ids.argmax(-1))
    assert max(calls) < 77 and len(set(calls)) > 1  # cut, and shorter for the short chunks


def test_torch_runtime_runs_every_graph_onnxruntime_runs(tiny_bundle):
    """One graph mapping (models/clip/graph_set.py) serves export and the torch runtime, so the
    torch runtime has every graph of the bundle — the segmentation graphs were missing from its
    own copy of the mapping, and /v1/segment on `engine: torch` answered 500 — and each agrees
    with ONNX Runtime."""
    ort = ClipGraphs.create("onnxruntime", tiny_bundle, EngineOptions(threads=1))
    pt = ClipGraphs.create("torch", tiny_bundle)
    assert set(pt.engine._graphs) == set(tiny_bundle.manifest.graphs)
    rng = np.random.default_rng(3)
    dense = tiny_bundle.manifest.config.dense_graphs()
    assert {"anomaly", "winclip", "segment_sclip", "segment_clearclip", "segment_maskclip"} <= set(
        dense
    )
    for graph in dense:
        size = {"anomaly": tiny_bundle.manifest.config.anomaly.image_size}.get(graph, 224)
        x = rng.standard_normal((2, 3, size, size), dtype=np.float32)
        for got, want in zip(pt.encode_dense(graph, x), ort.encode_dense(graph, x), strict=True):
            np.testing.assert_allclose(got, want, atol=2e-4)


def test_bundles_exported_before_families_still_load(tiny_bundle, tmp_path):
    """bundle.json schema 1 had CLIP's fields at the top level; it reads as a clip bundle with
    the same section, so users' existing bundles keep serving."""
    import json
    import shutil

    from promptserve.models.bundle import BUNDLE_FILE
    from promptserve.models.clip.bundle import ClipBundleConfig, clip_config

    old = tmp_path / "v1"
    shutil.copytree(tiny_bundle.dir, old)
    raw = json.loads((old / BUNDLE_FILE).read_text())
    assert raw["schema_version"] == 2 and raw["family"] == "clip"
    flat = {k: v for k, v in raw.items() if k not in ("config", "family")}
    flat |= raw["config"] | {"schema_version": 1}
    (old / BUNDLE_FILE).write_text(json.dumps(flat))
    bundle = Bundle(old)
    assert bundle.manifest.family == "clip" and bundle.family.name == "clip"
    assert clip_config(bundle) == clip_config(tiny_bundle)
    assert isinstance(bundle.manifest.config, ClipBundleConfig)
