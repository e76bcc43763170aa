"""Backbone specs and the real loading path: local files (open_clip and OpenAI key layouts),
custom open_clip model-config JSON, and the seeded weights the tests and demo use."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from promptserve.models.clip.backbone import BUILTIN_CONFIG_DIR, BackboneError, BackboneSpec
from promptserve.models.clip.export.seeded import DEMO_ARCH, seeded_backbone


def test_parse_forms():
    assert BackboneSpec.parse("ViT-B-32:laion2b_s34b_b79k") == BackboneSpec(
        model="ViT-B-32", pretrained="laion2b_s34b_b79k"
    )
    assert BackboneSpec.parse("ViT-B-16@/m/w.pt") == BackboneSpec(
        model="ViT-B-16", weights="/m/w.pt"
    )
    assert BackboneSpec.parse("/c/my-vit.json@/m/w.safetensors").arch == "my-vit"
    assert BackboneSpec.parse("ViT-B-32:openai").id == "ViT-B-32:openai"
    with pytest.raises(BackboneError, match="NAME:TAG"):
        BackboneSpec.parse("ViT-B-32")
    with pytest.raises(ValueError, match="exactly one"):
        BackboneSpec(model="ViT-B-32", pretrained="openai", weights="/x")


def test_open_clip_registry_config_resolves_without_weights():
    cfg = BackboneSpec.parse("ViT-B-32:openai").model_cfg()
    assert cfg["text_cfg"]["width"] == 512 and cfg["vision_cfg"]["patch_size"] == 32


def test_seeded_weights_are_deterministic_and_load_through_the_file_path(tmp_path, tiny_model):
    a = seeded_backbone(directory=tmp_path / "a", seed=0)
    b = seeded_backbone(directory=tmp_path / "b", seed=0)
    c = seeded_backbone(directory=tmp_path / "c", seed=1)
    assert a.id == b.id != c.id and a.weights.endswith(".safetensors")
    loaded = a.load()
    ref = tiny_model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in loaded.state_dict().items())


def _same_outputs(m1, m2):
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    ids = torch.randint(1, 49000, (2, 77), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.allclose(m1.encode_image(x), m2.encode_image(x), atol=1e-6) and torch.allclose(
            m1.encode_text(ids), m2.encode_text(ids), atol=1e-6
        )


def test_openai_format_state_dict_loads(tmp_path, tiny_spec, tiny_model):
    # OpenAI CLIP state dicts use open_clip's parameter names plus three non-parameter entries,
    # and are stored in fp16.
    sd = {k: v.half() for k, v in tiny_model.state_dict().items()}
    sd.update(
        input_resolution=torch.tensor(224),
        context_length=torch.tensor(77),
        vocab_size=torch.tensor(49408),
    )
    torch.save(sd, tmp_path / "openai.pt")
    model = BackboneSpec(model=DEMO_ARCH, weights=str(tmp_path / "openai.pt")).load()
    rounded = tiny_spec.load()
    rounded.load_state_dict({k: v.half().float() for k, v in tiny_model.state_dict().items()})
    assert model.visual.conv1.weight.dtype == torch.float32
    assert not torch.equal(rounded.visual.conv1.weight, tiny_model.visual.conv1.weight)
    assert _same_outputs(model, rounded)


def test_wrapped_and_dataparallel_checkpoints_load(tmp_path, tiny_model):
    sd = {f"module.{k}": v for k, v in tiny_model.state_dict().items()}
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "ckpt.pt")
    assert _same_outputs(
        BackboneSpec(model=DEMO_ARCH, weights=str(tmp_path / "ckpt.pt")).load(), tiny_model
    )


def test_custom_model_config_json(tmp_path):
    cfg = json.loads((BUILTIN_CONFIG_DIR / f"{DEMO_ARCH}.json").read_text())
    cfg["vision_cfg"]["layers"] = 1
    path = tmp_path / "my-one-layer-vit.json"
    path.write_text(json.dumps(cfg))
    spec = seeded_backbone(str(path), directory=tmp_path)
    assert spec.config == str(path) and spec.arch == "my-one-layer-vit"
    model = spec.load()
    assert len(model.visual.transformer.resblocks) == 1
    assert spec.text_width() == 64


def test_loading_errors_are_actionable(tmp_path):
    with pytest.raises(BackboneError, match="does not exist"):
        BackboneSpec(model=DEMO_ARCH, weights=str(tmp_path / "missing.pt")).load()
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneError, match="cannot read"):
        BackboneSpec(model=DEMO_ARCH, weights=str(tmp_path / "junk.pt")).load()
    with pytest.raises(BackboneError, match="unknown open_clip model"):
        BackboneSpec(model="NoSuchNet", weights="/x").model_cfg()
    shutil.copy(BUILTIN_CONFIG_DIR / f"{DEMO_ARCH}.json", tmp_path / "cfg.json")
    with pytest.raises(BackboneError, match="does not exist"):
        BackboneSpec(config=str(tmp_path / "nope.json"), weights="/x").load()


def test_source_schemas_parse_as_open_clip_does():
    """`hf-hub:` and `local-dir:` name a folder of config + weights (open_clip's
    parse_model_name), not an architecture called "hf-hub" with tag "timm/..."."""
    hub = BackboneSpec.parse("hf-hub:timm/ViT-B-16-SigLIP")
    assert hub.source == "hf-hub:timm/ViT-B-16-SigLIP" and hub.model is None
    assert hub.arch == "ViT-B-16-SigLIP" and hub.id == "hf-hub:timm/ViT-B-16-SigLIP"
    local = BackboneSpec.parse("local-dir:/models/my-clip/")
    assert local.source == "local-dir:/models/my-clip/" and local.arch == "my-clip"
    with pytest.raises(ValueError, match="together"):
        BackboneSpec(source="hf-hub:a/b", weights="/w.safetensors")
    with pytest.raises(ValueError, match="hf-hub:ORG/REPO"):
        BackboneSpec(source="hf-hub:")


def test_local_dir_folder_loads_offline_and_is_identified_by_its_weights(tmp_path, tiny_model):
    """open_clip's local-dir layout (open_clip_config.json + open_clip_model.safetensors),
    read with our safe reader: the same model as the seeded weights, and an id that changes
    with the weights, not the folder's path."""
    from safetensors.torch import save_file

    folder = tmp_path / "tiny-clip"
    folder.mkdir()
    cfg = json.loads((BUILTIN_CONFIG_DIR / f"{DEMO_ARCH}.json").read_text())
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    sd = {k: v.contiguous() for k, v in tiny_model.state_dict().items()}
    save_file(sd, str(folder / "open_clip_model.safetensors"))
    spec = BackboneSpec.parse(f"local-dir:{folder}")
    assert spec.model_cfg()["text_cfg"]["width"] == cfg["text_cfg"]["width"]
    assert _same_outputs(spec.load(), tiny_model)
    moved = tmp_path / "elsewhere" / "tiny-clip"
    shutil.copytree(folder, moved)
    assert BackboneSpec.parse(f"local-dir:{moved}").id == spec.id
    sd["logit_scale"] = sd["logit_scale"] + 1
    save_file(sd, str(moved / "open_clip_model.safetensors"))
    assert BackboneSpec.parse(f"local-dir:{moved}").id != spec.id
