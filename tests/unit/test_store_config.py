"""The prompt store (content ids, replacement, deletion) and the YAML application config."""

from __future__ import annotations

import numpy as np
import pytest

from promptserve.models.artifacts import ArtifactError, PromptArtifact
from promptserve.models.clip.export.importers.templates import build_templates
from promptserve.serving.config import load_config
from promptserve.serving.errors import InvalidInput, PromptNotFound
from promptserve.serving.store import PromptStore


def test_content_id_ignores_created_at_and_tracks_content(tmp_path):
    a = build_templates(["cat", "dog"], backbone_id="b")
    b = PromptArtifact.load(a.save(tmp_path / "a"))
    assert a.content_id == b.content_id
    assert build_templates(["cat", "dogs"], backbone_id="b").content_id != a.content_id
    assert build_templates(["cat", "dog"], backbone_id="c").content_id != a.content_id


def test_store_roundtrip_replace_delete(tmp_path):
    store = PromptStore(str(tmp_path))
    a = build_templates(["cat", "dog"], backbone_id="b")
    info = store.put("pets", a, np.ones((2, 4), np.float32))
    assert info.content_id == a.content_id and [p.prompt_id for p in store.list()] == ["pets"]
    art, feats = store.load("pets", a.content_id)
    assert art.manifest.classnames == ["cat", "dog"] and feats.shape == (2, 4)
    assert art.content_id == a.content_id
    b = build_templates(["cat", "dog", "cow"], backbone_id="b")
    store.put("pets", b, np.ones((3, 4), np.float32))
    with pytest.raises(PromptNotFound, match="replaced"):
        store.load(
            "pets", a.content_id
        )  # a replica holding the old id must not serve stale features
    store.delete("pets")
    assert store.list() == []
    with pytest.raises(PromptNotFound):
        store.info("pets")
    with pytest.raises(InvalidInput):
        store.info("../etc")


def test_artifact_load_errors(tmp_path):
    with pytest.raises(ArtifactError, match=r"no manifest\.json"):
        PromptArtifact.load(tmp_path)
    with pytest.raises(ArtifactError, match="classnames"):
        PromptArtifact.from_parts({"method": "templates", "backbone": "b", "classnames": []}, None)


def test_yaml_config_resolves_relative_paths(tmp_path):
    (tmp_path / "cfg.yaml").write_text(
        "bundle: bundles/b\nengine: {name: onnxruntime, threads: 2}\n"
        "encoder: {max_batch_size: 8, batch_wait_timeout_s: 0.01}\nprompts: {store: s3://bucket/p, preload: [arts]}\n"
    )
    cfg = load_config(tmp_path / "cfg.yaml")
    assert cfg.bundle == str(tmp_path / "bundles" / "b")
    assert cfg.prompts.preload == [str(tmp_path / "arts")] and cfg.prompts.store == "s3://bucket/p"
    assert cfg.encoder.max_batch_size == 8 and cfg.engine.threads == 2


def test_config_rejects_unknown_keys(tmp_path):
    (tmp_path / "bad.yaml").write_text("bundle: b\nencoder: {max_batch: 8}\n")
    with pytest.raises(ValueError, match="max_batch"):
        load_config(tmp_path / "bad.yaml")


def test_config_rejects_a_tensorrt_profile_below_the_batch_size(tmp_path):
    (tmp_path / "trt.yaml").write_text(
        "bundle: b\nencoder: {max_batch_size: 128}\nengine: {tensorrt: {max_batch: 64}}\n"
    )
    with pytest.raises(ValueError, match=r"max_batch 64 is below encoder\.max_batch_size 128"):
        load_config(tmp_path / "trt.yaml")


def test_example_config_is_valid():
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[2] / "examples" / "config.yaml")
    assert cfg.engine.name == "onnxruntime" and cfg.encoder.max_batch_size == 32
    assert cfg.bundle.endswith("bundles/vit-b-32")


def test_triton_example_config_is_valid():
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[2] / "examples" / "config-triton.yaml")
    assert cfg.engine.name == "triton" and cfg.engine.triton.shared_memory == "system"
    assert cfg.encoder.max_inflight_batches == 2


def test_api_keys_from_config_and_env(monkeypatch):
    from promptserve.serving.config import AuthConfig

    monkeypatch.setenv("MY_KEYS", " k2, k3 ,")
    assert AuthConfig(api_keys=["k1"], api_keys_env="MY_KEYS").read_keys() == {"k1", "k2", "k3"}
    assert AuthConfig(api_keys_env=None).read_keys() == frozenset()


def test_serve_config_import_path_builds_both_topologies(tiny_bundle, tmp_path):
    """The family's deployments come from the bundle, so building needs the bundle; the
    example config names one `promptserve export` writes."""
    from pathlib import Path

    from ray.serve import Application

    from promptserve.models.bundle import BundleError
    from promptserve.serving.app import app_builder

    example = Path(__file__).resolve().parents[2] / "examples" / "config.yaml"
    with pytest.raises(BundleError, match="promptserve export"):
        app_builder({"config": str(example)})
    bundle = str(tiny_bundle.dir)
    for topology in ("split", "fused"):
        assert isinstance(app_builder({"bundle": bundle, "topology": topology}), Application)
    with pytest.raises(ValueError, match="topology"):
        app_builder({"bundle": bundle, "topology": "sideways"})


def test_store_load_checks_the_artifact_as_well_as_the_features(tmp_path):
    """A stored manifest edited after registration (class names reversed, features untouched)
    no longer matches the content id the request resolved: the load refuses it rather than
    serving the features under the wrong labels."""
    import json

    store = PromptStore(str(tmp_path))
    a = build_templates(["cat", "dog", "cow"], backbone_id="b")
    store.put("pets", a, np.eye(3, 4, dtype=np.float32))
    version = json.loads((tmp_path / "pets" / "registration.json").read_text())["version"]
    path = tmp_path / "pets" / version / "manifest.json"  # the files of the registration served
    manifest = json.loads(path.read_text())
    manifest["classnames"].reverse()
    path.write_text(json.dumps(manifest))
    with pytest.raises(PromptNotFound, match="no longer holds"):
        store.load("pets", a.content_id)


def test_artifact_manifests_are_typed_by_family(tmp_path):
    """The common manifest knows no family; `family` (default clip, so artifacts written before
    families load, with the same content id) picks the family's manifest class."""
    import json

    from promptserve.models.clip.artifacts import ClipArtifactManifest

    a = build_templates(["cat", "dog"], backbone_id="b")
    raw = json.loads((a.save(tmp_path / "a") / "manifest.json").read_text())
    assert raw["family"] == "clip"
    del raw["family"]  # as written before families existed
    old = PromptArtifact.from_parts(raw, None)
    assert isinstance(old.manifest, ClipArtifactManifest) and old.content_id == a.content_id
    with pytest.raises(ArtifactError, match="unknown model family 'nope'"):
        PromptArtifact.from_parts({**raw, "family": "nope"}, None)
    with pytest.raises(ArtifactError, match="classnames"):
        PromptArtifact.from_parts({k: v for k, v in raw.items() if k != "classnames"}, None)


def test_a_corrupt_entry_is_quarantined_and_the_list_still_answers(tmp_path):
    """One stored prompt whose files no longer parse is a 404 saying so; the list answers
    without it (it was a 500 for the whole list), and it can still be deleted."""
    store = PromptStore(str(tmp_path))
    for name in ("good", "bad", "worse"):
        store.put(name, build_templates([name, "x"], backbone_id="b"), np.ones((2, 4), np.float32))
    import json

    version = json.loads((tmp_path / "bad" / "registration.json").read_text())["version"]
    (tmp_path / "bad" / version / "manifest.json").write_text("{not json")
    (tmp_path / "worse" / "registration.json").write_text("[]")
    assert [p.prompt_id for p in store.list()] == ["good"]
    for name in ("bad", "worse"):
        with pytest.raises(PromptNotFound, match="corrupt"):
            store.info(name)
    store.delete("bad")
    assert not (tmp_path / "bad").exists()
