"""`POST /v1/anomaly` and `Client.detect_anomalies` on a real server: an AnomalyCLIP artifact
imported from a file laid out as its train.py saves it, maps at each image's own size, equal
to the engine-level computation; wrong prompts and bad input get clear 4xx answers."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from conftest import ANOMALY_TAPS, assert_served_maps, make_image
from PIL import Image

from promptserve import Client, InvalidInput, PromptNotFound, overlay
from promptserve.models.artifacts import PromptArtifact
from promptserve.models.clip.export.importers.anomalyclip import import_anomalyclip
from promptserve.models.clip.export.importers.templates import build_templates
from promptserve.models.clip.methods import get_method
from promptserve.models.clip.methods.anomalyclip import AnomalyCLIPParams

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "parity"))
from anomalyclip_reference import PromptLearner

PARAMS = AnomalyCLIPParams(taps=ANOMALY_TAPS, dpam_layer=3, image_size=224, sigma=4.0)


@pytest.fixture(scope="module")
def anomaly_prompt(server, tiny_model, tiny_spec, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("anomaly")
    learner = PromptLearner(tiny_model, n_ctx=12, depth=3, t_n_ctx=4, seed=2)
    torch.save({"prompt_learner": learner.state_dict()}, tmp / "epoch_15.pth")
    art = import_anomalyclip(tmp / "epoch_15.pth", backbone=tiny_spec, params=PARAMS)
    with Client(server["base_url"]) as c:
        c.register_prompt(art.save(tmp / "art"), prompt_id="anomaly-ac")
        plain = build_templates(["cat", "dog"], backbone_id=tiny_spec.id, templates=["a {}."])
        c.register_prompt(plain.save(tmp / "plain"), prompt_id="anomaly-plain")
    return art


def test_maps_come_back_at_each_images_size_and_match_the_engine(
    server, anomaly_prompt, tiny_bundle
):
    from promptserve.models.clip.runtime import ClipGraphs

    images = [make_image(1, (320, 240)), make_image(2, (200, 300), fmt="PNG")]
    with Client(server["base_url"]) as c:
        out = c.detect_anomalies(images, prompt_id="anomaly-ac")
    assert [r.index for r in out.results] == [0, 1]
    maps = [r.anomaly_map() for r in out.results]
    assert maps[0].shape == (240, 320) and maps[1].shape == (300, 200)
    assert all(0 <= r.score <= 1 for r in out.results)
    assert all(m.min() >= 0 and m.max() <= 1 and m.std() > 1e-4 for m in maps)

    # the same computation without the server: resize, engine, head, resize back
    engine = ClipGraphs.create("onnxruntime", tiny_bundle)
    method = get_method("anomalyclip")
    head = method.make_head(
        anomaly_prompt, method.class_features(anomaly_prompt, engine.text_tower), engine.text_tower
    )
    assert_served_maps(
        images, out.results, head, engine.encode_anomaly, tiny_bundle.manifest.config.preprocess
    )


def test_overlay_draws_the_map_over_the_image(server, anomaly_prompt):
    image = make_image(3, (160, 120))
    with Client(server["base_url"]) as c:
        result = c.detect_anomalies(image, prompt_id="anomaly-ac").results[0]
    picture = overlay(image, result.anomaly_map())
    assert picture.size == (160, 120) and picture.mode == "RGB"


def test_wrong_prompts_and_bad_input(server, anomaly_prompt, tiny_spec, tmp_path):
    url = server["base_url"]
    with Client(url) as c:
        with pytest.raises(InvalidInput, match="/v1/anomaly"):
            c.classify(make_image(4), prompt_id="anomaly-ac")
        with pytest.raises(InvalidInput, match="/v1/classify"):
            c.detect_anomalies(make_image(4), prompt_id="anomaly-plain")
        with pytest.raises(PromptNotFound):
            c.detect_anomalies(make_image(4), prompt_id="no-such-prompt")
        # an artifact for another input size than the bundle's anomaly graph
        bad = anomaly_prompt.manifest.model_copy(
            update={"hparams": {**anomaly_prompt.manifest.hparams, "image_size": 336}}
        )
        with pytest.raises(InvalidInput, match="re-export"):
            c.register_prompt(
                PromptArtifact(bad, anomaly_prompt.tensors).save(tmp_path / "bad"),
                prompt_id="anomaly-bad",
            )
    r = httpx.post(
        f"{url}/v1/anomaly",
        json={"images": ["bm90IGFuIGltYWdl"], "prompt_id": "anomaly-ac"},
        timeout=30,
    )
    assert r.status_code == 400 and "images[0]" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/anomaly", json={"images": []}, timeout=30)
    assert r.status_code == 400
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200  # still serving


def test_eval_anomaly_cli_matches_a_direct_computation(server, anomaly_prompt, tmp_path):
    """`promptserve eval anomaly` on a synthetic MVTec-layout set: its metrics equal
    scikit-learn's AUROC and AnomalyCLIP's PRO computed here from the same served maps."""
    import json
    import os
    import subprocess

    from anomaly_metrics_reference import cal_pro_score
    from mvtec_synthetic import write_synthetic_mvtec
    from sklearn.metrics import roc_auc_score

    from promptserve.anomaly_eval import mvtec_samples

    data = write_synthetic_mvtec(tmp_path / "mvtec")
    out = subprocess.run(
        [sys.executable, "-m", "promptserve.cli", "eval", "anomaly", "--data", str(data),
         "--prompt-id", "anomaly-ac", "--url", server["base_url"], "--json",
         str(tmp_path / "metrics.json"), "--overlays", str(tmp_path / "overlays")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TQDM_DISABLE": "1"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "tile" in out.stdout and "mean pro" in out.stdout
    got = json.loads((tmp_path / "metrics.json").read_text())
    assert set(got) == {"tile", "fabric"}
    assert (tmp_path / "overlays" / "tile" / "spot" / "000.png").exists()

    with Client(server["base_url"]) as c:
        for category, samples in mvtec_samples(data).items():
            res = c.detect_anomalies([s.path for s in samples], prompt_id="anomaly-ac").results
            labels = np.array([s.anomalous for s in samples])
            masks = np.stack([
                np.asarray(Image.open(s.mask)) > 127 if s.mask else np.zeros((96, 96), bool)
                for s in samples
            ])  # fmt: skip
            maps = np.stack([r.anomaly_map() for r in res])
            want = {
                "image_auroc": roc_auc_score(labels, [r.score for r in res]),
                "pixel_auroc": roc_auc_score(masks.ravel(), maps.ravel()),
                "pro": cal_pro_score(masks.astype(np.uint8), maps),
            }
            for key, value in want.items():
                # separately batched requests may differ in the last float16 bit of a few pixels
                assert got[category][key] == pytest.approx(value, abs=1e-4), (category, key)
            assert got[category]["images"] == len(samples) == 8 + (0 if category == "tile" else -2)
