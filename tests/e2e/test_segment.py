"""`POST /v1/segment` and `Client.segment` on a real server: label maps at each image's size
equal to the engine-level computation (resize, windows, dense graph, stitching), free labels
with synonyms or a registered text prompt, per-class scores, the overlay, the eval command's
mIoU against a direct computation, and clear 4xx answers for bad vocabularies and images."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from conftest import SEGMENT_METHODS, make_image
from PIL import Image

from promptserve import Client, InvalidInput, segment_overlay
from promptserve.models.clip.export.importers.templates import build_templates
from promptserve.models.clip.methods.segment import DEFAULTS, cut_windows, segment, window_boxes
from promptserve.models.clip.serve.inputs import decode_for_segment
from promptserve.models.clip.text import template_ensemble
from promptserve.serving.config import LimitsConfig

TEMPLATE = ["a photo of a {}."]


def _direct(bundle, blob, names, name_class, method, *, short_side, stride=112):
    """The server's computation without the server."""
    from promptserve.images import normalize
    from promptserve.models.clip.runtime import ClipGraphs

    engine = ClipGraphs.create("onnxruntime", bundle)
    pre = bundle.manifest.config.preprocess
    image, original = decode_for_segment(blob, 0, short_side, LimitsConfig())
    boxes = window_boxes(*image.shape[:2], 224, stride)
    fill = tuple(round(255 * m) for m in pre.mean)
    windows = normalize(cut_windows(image, boxes, 224, fill), mean=pre.mean, std=pre.std)
    feats = engine.encode_dense(f"segment_{method}", windows)[0]
    text = template_ensemble(engine.text_tower, names, TEMPLATE)
    return segment(
        feats, boxes, text, name_class=np.asarray(name_class), crop=224,
        resized=image.shape[:2], original=original, logit_scale=DEFAULTS[method].logit_scale,
    ).labels  # fmt: skip


@pytest.mark.parametrize("method", SEGMENT_METHODS)
def test_label_maps_match_the_engine_computation(server, tiny_bundle, method):
    images = [make_image(21, (300, 200)), make_image(22, (160, 250), fmt="PNG")]
    labels = [["cat", "kitten"], "dog", "sky"]
    with Client(server["base_url"]) as c:
        out = c.segment(images, labels=labels, templates=TEMPLATE, method=method, short_side=256)
    assert out.labels == ["cat", "dog", "sky"] and out.method == method
    maps = [r.labels() for r in out.results]
    assert maps[0].shape == (200, 300) and maps[1].shape == (250, 160)
    for blob, got in zip(images, maps, strict=True):
        want = _direct(
            tiny_bundle, blob, ["cat", "kitten", "dog", "sky"], [0, 0, 1, 2], method, short_side=256
        )
        assert set(np.unique(got)) <= {0, 1, 2}
        assert (got == want).mean() > 0.999


def test_prompt_vocabulary_equals_free_labels(server, tiny_spec, tmp_path):
    """A templates artifact of the same classes and template gives the same label maps."""
    art = build_templates(["cat", "dog", "sky"], backbone_id=tiny_spec.id, templates=TEMPLATE)
    image = make_image(23, (240, 240))
    with Client(server["base_url"]) as c:
        c.register_prompt(art.save(tmp_path / "seg"), prompt_id="seg-vocab")
        by_prompt = c.segment(image, prompt_id="seg-vocab", return_scores=True)
        by_labels = c.segment(image, labels=["cat", "dog", "sky"], templates=TEMPLATE)
    assert by_prompt.labels == ["cat", "dog", "sky"] and by_prompt.method == "sclip"
    a, b = by_prompt.results[0].labels(), by_labels.results[0].labels()
    assert (a == b).mean() > 0.999
    scores = by_prompt.results[0].scores
    counts = np.bincount(a.ravel(), minlength=3) / a.size
    assert {s.label for s in scores} == {["cat", "dog", "sky"][i] for i in np.unique(a)}
    for s in scores:
        assert s.area == pytest.approx(counts[s.index], abs=1e-6) and 0 < s.confidence <= 1
    assert [s.area for s in scores] == sorted((s.area for s in scores), reverse=True)


def test_threshold_sends_unsure_pixels_to_class_zero(server):
    image = make_image(24, (200, 200))
    with Client(server["base_url"]) as c:
        sure = c.segment(image, labels=["background", "cat", "dog"], return_scores=True)
        unsure = c.segment(image, labels=["background", "cat", "dog"], prob_threshold=1.0)
    assert np.any(sure.results[0].labels() != 0)
    assert np.all(unsure.results[0].labels() == 0)


def test_overlay_has_a_legend(server):
    image = make_image(25, (180, 120))
    with Client(server["base_url"]) as c:
        out = c.segment(image, labels=["cat", "dog", "sky"])
    picture = segment_overlay(image, out.results[0].labels(), out.labels)
    assert picture.height == 120 and picture.width > 180  # the legend sits on the right
    assert picture.getpixel((picture.width - 1, picture.height - 1)) == (255, 255, 255)


def test_bad_input(server, tmp_path):
    url = server["base_url"]
    image = make_image(26)
    with Client(url) as c:
        with pytest.raises(InvalidInput, match="exactly one"):
            c.segment(image)
        with pytest.raises(InvalidInput, match="non-empty"):
            c.segment(image, labels=[])
        with pytest.raises(InvalidInput, match="above the limit"):
            c.segment(image, labels=[f"class {i}" for i in range(10_000)])
        with pytest.raises(InvalidInput, match="method"):
            c.segment(image, labels=["cat"], method="segformer")
        with pytest.raises(InvalidInput, match="stride"):
            c.segment(image, labels=["cat"], stride=500)
        buf = io.BytesIO()
        Image.new("RGB", (4100, 4100), (128, 128, 128)).save(buf, format="PNG")
        with pytest.raises(InvalidInput, match="MP"):
            c.segment(buf.getvalue(), labels=["cat"])
    r = httpx.post(
        f"{url}/v1/segment", json={"images": ["bm90IGFuIGltYWdl"], "labels": ["cat"]}, timeout=30
    )
    assert r.status_code == 400 and "images[0]" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/segment", json={"images": [], "labels": ["cat"]}, timeout=30)
    assert r.status_code == 400
    # multipart with repeated `labels` fields
    files = [("images", ("a.png", make_image(27, fmt="PNG"), "image/png"))]
    r = httpx.post(
        f"{url}/v1/segment",
        files=files,
        data={"labels": ["cat", "dog"], "method": "clearclip"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.json()["labels"] == ["cat", "dog"] and r.json()["method"] == "clearclip"
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200


def test_eval_segment_cli_matches_a_direct_computation(server, tmp_path):
    import json
    import os
    import subprocess
    import sys

    from segment_synthetic import CLASSES, write_synthetic_segmentation
    from sklearn.metrics import confusion_matrix

    data = write_synthetic_segmentation(tmp_path / "seg")
    out = subprocess.run(
        [sys.executable, "-m", "promptserve.cli", "eval", "segment", "--images", str(data / "images"),
         "--masks", str(data / "masks"), "--labels", str(data / "labels.txt"), "--url",
         server["base_url"], "--json", str(tmp_path / "miou.json")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TQDM_DISABLE": "1"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "mIoU" in out.stdout
    got = json.loads((tmp_path / "miou.json").read_text())
    groups = [line.split(", ") for line in CLASSES]
    truth, preds = [], []
    with Client(server["base_url"]) as c:
        for path in sorted((data / "images").iterdir()):
            res = c.segment(path, labels=groups).results[0]
            preds.append(res.labels().ravel())
            truth.append(np.asarray(Image.open(data / "masks" / path.name)).ravel())
    t, p = np.concatenate(truth), np.concatenate(preds)
    keep = t != 255
    cm = confusion_matrix(t[keep], p[keep], labels=[0, 1, 2])
    inter = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    assert got["miou"] == pytest.approx(float(np.nanmean(iou)), abs=1e-9)
    for name, value in zip(["background", "red square", "blue disc"], iou, strict=True):
        assert got["iou"][name] == (None if np.isnan(value) else pytest.approx(value, abs=1e-9))
