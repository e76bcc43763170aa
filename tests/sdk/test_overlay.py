"""The heat-map overlay: hot where the map is high, the image's own size, any input form."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from promptserve import heatmap, overlay
from promptserve.types import EncodedArray


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (128, 128, 128)).save(buf, format="PNG")
    return buf.getvalue()


def test_heatmap_is_cold_to_hot():
    rgb = heatmap(np.array([[0.0, 1.0]], np.float32))
    cold, hot = rgb[0, 0].astype(int), rgb[0, 1].astype(int)
    assert cold[2] > cold[0] and hot[0] > hot[2]  # blue at 0, red at the top
    assert (heatmap(np.zeros((2, 2), np.float32)) == rgb[0, 0]).all()  # all-zero: all cold
    fixed = heatmap(np.array([[0.5]], np.float32), vmax=1.0)[0, 0]
    assert not (fixed == rgb[0, 0]).all() and not (fixed == rgb[0, 1]).all()


def test_overlay_resizes_the_map_and_marks_the_hot_region(tmp_path):
    path = tmp_path / "part.png"
    path.write_bytes(_png(80, 40))
    amap = np.zeros((10, 20), np.float32)
    amap[:, 15:] = 1.0  # right quarter anomalous
    for source in (path, str(path), path.read_bytes(), Image.open(path)):
        img = overlay(source if not isinstance(source, type(path)) else str(source), amap)
        assert img.size == (80, 40)
        arr = np.asarray(img).astype(int)
        assert arr[20, 75, 0] > arr[20, 75, 2] and arr[20, 5, 2] > arr[20, 5, 0]


def test_encoded_array_roundtrip():
    a = np.random.default_rng(0).random((3, 5)).astype(np.float32)
    enc = EncodedArray.from_numpy(a, "float16")
    back = EncodedArray.model_validate_json(enc.model_dump_json()).to_numpy()
    assert back.dtype == np.float16 and back.shape == (3, 5)
    np.testing.assert_allclose(back, a, atol=1e-3)
