"""Export parity and engine agreement: ONNX Runtime and torch give the same outputs."""

from __future__ import annotations

import numpy as np
import pytest

from promptserve.exporters.bundle import Bundle
from promptserve.exporters.export import ExportParityError, export_bundle
from promptserve.serving.engines.base import EngineOptions, create_engine


def test_bundle_records_passing_parity(tiny_bundle):
    m = tiny_bundle.manifest
    assert set(m.parity) == {"vision", "text"}
    for p in m.parity.values():
        assert p.passed and p.max_abs_diff <= 1e-4 and p.min_cosine > 0.99999
    assert m.preprocess.size == 224 and m.embed_dim == 64 and m.text_width == 64
    assert tiny_bundle.token_embedding.shape == (49408, 64)


def test_engines_agree(tiny_bundle):
    ort = create_engine("onnxruntime", tiny_bundle, EngineOptions(threads=1))
    pt = create_engine("torch", tiny_bundle)
    rng = np.random.default_rng(0)
    for batch in (1, 5):
        x = rng.standard_normal((batch, 3, 224, 224), dtype=np.float32)
        np.testing.assert_allclose(ort.encode_image(x), pt.encode_image(x), atol=1e-4)
    ids = tiny_bundle.tokenizer(
        ["a photo of a dog.", "X X X X a cat.", "a longer sentence about the sea."]
    )
    emb = tiny_bundle.token_embedding[ids]
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
        create_engine("tensorflow", None)  # type: ignore[arg-type]


def test_missing_execution_provider_is_explained(tiny_bundle):
    with pytest.raises(ValueError, match="not available"):
        create_engine(
            "onnxruntime", tiny_bundle, EngineOptions(providers=["TensorrtExecutionProvider"])
        )
