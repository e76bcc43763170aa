"""`promptserve import peft | dro | idp | hard-prompt` and the seeded prompts, on real files.

PEFT adapters are written by the installed peft's own get_peft_model + save_pretrained on the
tiny seeded LLM, and the expected tensors come from peft (get_prompt_embedding_to_save) and
from PeftModelForCausalLM.forward itself; DRO files by safetensors.torch.save_file as
chujiezheng/LLM-Safeguard code/train.py writes them; optimiser JSON in the shapes their code
writes (DSPy Module.save, OPRO results, APE's result text)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from promptserve.models.artifacts import ArtifactError, ArtifactMismatch, PromptArtifact
from promptserve.models.llm.backbone import LlmBackboneSpec
from promptserve.models.llm.export.generation_importers import (
    import_dro,
    import_hard_prompt,
    import_idp,
    import_peft,
    pool_inputs_in,
    read_safetensors,
)
from promptserve.models.llm.generate.artifacts import (
    HardPromptManifest,
    PoolManifest,
    SoftPromptManifest,
    validate_generation,
)


@pytest.fixture(scope="module")
def backbone(tiny_llm_dir: Path) -> str:
    return f"local-dir:{tiny_llm_dir}"


@pytest.fixture(scope="module")
def backbone_id(backbone: str) -> str:
    return LlmBackboneSpec.parse(backbone).id


def _base(model_dir: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()


def _peft(model_dir: Path, out: Path, config, **save) -> tuple[Path, object]:
    from peft import get_peft_model

    model = get_peft_model(_base(model_dir), config)
    model.save_pretrained(str(out), **save)
    return out, model


def _prompt_tuning(n: int = 4):
    from peft import PromptTuningConfig

    return PromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=n, prompt_tuning_init="RANDOM"
    )


def _save_st(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    save_file(tensors, str(path))
    return path


# -- PEFT ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def prompt_tuning_adapter(tiny_llm_dir: Path, tmp_path_factory) -> tuple[Path, object]:
    torch.manual_seed(0)
    return _peft(tiny_llm_dir, tmp_path_factory.mktemp("peft") / "pt", _prompt_tuning())


def test_peft_prompt_tuning_imports_the_tensor_peft_saves(prompt_tuning_adapter, backbone_id):
    folder, model = prompt_tuning_adapter
    artifact = import_peft(folder)  # backbone from the adapter's base_model_name_or_path
    expected = model.get_prompt_embedding_to_save("default").numpy()
    assert isinstance(artifact.manifest, SoftPromptManifest)
    assert artifact.manifest.placement == "prefix"
    assert artifact.manifest.num_tokens == 4
    assert artifact.manifest.backbone == backbone_id
    np.testing.assert_array_equal(artifact.tensors["prompt_embeddings"], expected)


def test_peft_prompt_goes_before_every_input_embedding_bos_included(
    prompt_tuning_adapter, tiny_llm_dir
):
    """PeftModelForCausalLM.forward on token ids == the bare model on [prompt; embed(ids)]."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    folder, _ = prompt_tuning_adapter
    prompt = torch.from_numpy(import_peft(folder).tensors["prompt_embeddings"])
    ids = AutoTokenizer.from_pretrained(str(tiny_llm_dir))(
        "The river", return_tensors="pt"
    ).input_ids
    assert ids[0, 0].item() == AutoTokenizer.from_pretrained(str(tiny_llm_dir)).bos_token_id
    base = _base(tiny_llm_dir)
    with torch.no_grad():
        ours = base(inputs_embeds=torch.cat([prompt[None], base.get_input_embeddings()(ids)], 1))
        theirs = PeftModel.from_pretrained(_base(tiny_llm_dir), str(folder))(input_ids=ids)
    torch.testing.assert_close(ours.logits, theirs.logits[:, -ids.shape[1] - 4 :])


def test_peft_p_tuning_imports_the_encoder_output(tiny_llm_dir, tmp_path):
    from peft import PromptEncoderConfig

    torch.manual_seed(1)
    config = PromptEncoderConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=3, encoder_hidden_size=16
    )
    folder, model = _peft(tiny_llm_dir, tmp_path / "ptune", config)
    got = import_peft(folder).tensors["prompt_embeddings"]
    np.testing.assert_array_equal(got, model.get_prompt_embedding_to_save("default").numpy())
    raw = model.prompt_encoder["default"].embedding.weight.detach().numpy()
    assert not np.allclose(got, raw)  # the MLP's output, not its input


def test_peft_legacy_bin_is_read(tiny_llm_dir, tmp_path, backbone):
    torch.manual_seed(2)
    folder, model = _peft(
        tiny_llm_dir, tmp_path / "bin", _prompt_tuning(5), safe_serialization=False
    )
    assert (folder / "adapter_model.bin").exists()
    assert not (folder / "adapter_model.safetensors").exists()
    got = import_peft(folder, backbone).tensors["prompt_embeddings"]
    np.testing.assert_array_equal(got, model.get_prompt_embedding_to_save("default").numpy())


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_peft_bin_pickle_is_never_executed(tmp_path, backbone, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "PROMPT_TUNING"}))
    torch.save({"prompt_embeddings": _Payload()}, folder / "adapter_model.bin")
    with pytest.raises(ArtifactError, match="not a tensor"):
        import_peft(folder, backbone)
    assert not (tmp_path / "pwned").exists()


def test_peft_refuses_prefix_tuning_and_lora(tiny_llm_dir, tmp_path, backbone):
    from peft import LoraConfig, PrefixTuningConfig

    prefix, _ = _peft(
        tiny_llm_dir,
        tmp_path / "prefix",
        PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4),
    )
    with pytest.raises(ArtifactError, match="past_key_values"):
        import_peft(prefix, backbone)
    lora, _ = _peft(
        tiny_llm_dir,
        tmp_path / "lora",
        LoraConfig(task_type="CAUSAL_LM", r=2, target_modules=["q_proj"]),
    )
    with pytest.raises(ArtifactError, match="LORA adapter changes the model's weights"):
        import_peft(lora, backbone)


def _edited_adapter(src: Path, dst: Path, **changes) -> Path:
    dst.mkdir()
    config = json.loads((src / "adapter_config.json").read_text())
    (dst / "adapter_config.json").write_text(json.dumps({**config, **changes}))
    (dst / "adapter_model.safetensors").write_bytes(
        (src / "adapter_model.safetensors").read_bytes()
    )
    return dst


def test_peft_refuses_two_submodules_and_a_disagreeing_token_dim(
    prompt_tuning_adapter, tmp_path, backbone
):
    folder, _ = prompt_tuning_adapter
    two = _edited_adapter(folder, tmp_path / "two", num_transformer_submodules=2)
    with pytest.raises(ArtifactError, match="num_transformer_submodules is 2"):
        import_peft(two, backbone)
    wide = _edited_adapter(folder, tmp_path / "wide", token_dim=128)
    with pytest.raises(ArtifactError, match="64 wide but the config says token_dim=128"):
        import_peft(wide, backbone)


def test_peft_of_another_width_is_a_mismatch(tmp_path, backbone):
    folder = tmp_path / "narrow"
    folder.mkdir()
    config = {"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 2, "token_dim": 32}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    _save_st(folder / "adapter_model.safetensors", {"prompt_embeddings": torch.zeros(2, 32)})
    with pytest.raises(ArtifactMismatch, match="32 wide"):
        import_peft(folder, backbone)


# -- DRO -----------------------------------------------------------------------------------------
def test_dro_bfloat16_soft_prompt_is_placed_in_the_system_turn(tmp_path, backbone, backbone_id):
    prompt = (torch.randn(6, 64, generator=torch.Generator().manual_seed(3)) * 0.02).bfloat16()
    path = _save_st(tmp_path / "type.all_length.default.safetensors", {"soft_prompt": prompt})
    artifact = import_dro(path, backbone)
    assert isinstance(artifact.manifest, SoftPromptManifest)
    assert artifact.manifest.placement == "system"
    assert artifact.manifest.num_tokens == 6
    assert artifact.manifest.backbone == backbone_id
    np.testing.assert_array_equal(artifact.tensors["prompt_embeddings"], prompt.float().numpy())


def test_dro_refusals(tmp_path, backbone):
    wrong_key = _save_st(tmp_path / "a.safetensors", {"prompt": torch.zeros(2, 64)})
    with pytest.raises(ArtifactError, match="no 'soft_prompt' tensor"):
        import_dro(wrong_key, backbone)
    flat = _save_st(tmp_path / "b.safetensors", {"soft_prompt": torch.zeros(64)})
    with pytest.raises(ArtifactError, match="expected \\[tokens, width\\]"):
        import_dro(flat, backbone)
    narrow = _save_st(tmp_path / "c.safetensors", {"soft_prompt": torch.zeros(2, 48)})
    with pytest.raises(ArtifactMismatch):
        import_dro(narrow, backbone)
    (tmp_path / "d.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ArtifactError, match="not a safetensors file"):
        import_dro(tmp_path / "d.safetensors", backbone)
    # an unknown backbone id: no sizes, so the width is left to registration
    art = import_dro(narrow, "some-server-backbone@abc")
    assert art.manifest.backbone == "some-server-backbone@abc"


def test_safetensors_reader_matches_torch_for_each_float_dtype(tmp_path):
    values = torch.randn(3, 5, generator=torch.Generator().manual_seed(4))
    tensors = {"h": values.half(), "b": values.bfloat16(), "f": values, "d": values.double()}
    got = read_safetensors(_save_st(tmp_path / "x.safetensors", tensors))
    for name, tensor in tensors.items():
        assert got[name].dtype == np.float32
        np.testing.assert_array_equal(got[name], tensor.float().numpy())


# -- IDP -----------------------------------------------------------------------------------------
def test_idp_pool_from_files_and_an_adapter(prompt_tuning_adapter, tmp_path, backbone, backbone_id):
    folder, model = prompt_tuning_adapter
    a = torch.randn(2, 64) * 0.02
    b = torch.randn(7, 64) * 0.02
    pa = _save_st(tmp_path / "a.safetensors", {"anything": a})
    pb = _save_st(tmp_path / "b.safetensors", {"soft_prompt": b})
    artifact = import_idp([pa, folder, pb], backbone, layer=1, heads=[0, 3])
    manifest = artifact.manifest
    assert isinstance(manifest, PoolManifest)
    assert manifest.token_counts == [2, 4, 7]
    assert (manifest.layer, manifest.heads, manifest.backbone) == (1, [0, 3], backbone_id)
    np.testing.assert_array_equal(artifact.tensors["prompt.0"], a.numpy())
    expected = model.get_prompt_embedding_to_save("default").numpy()
    np.testing.assert_array_equal(artifact.tensors["prompt.1"], expected)
    np.testing.assert_array_equal(artifact.tensors["prompt.2"], b.numpy())
    saved = PromptArtifact.load(artifact.save(tmp_path / "pool"))
    assert saved.content_id == artifact.content_id


def test_idp_dir_is_read_in_natural_order(tmp_path, backbone):
    pool = tmp_path / "pool"
    pool.mkdir()
    for i in (10, 2, 1):
        _save_st(pool / f"p{i}.safetensors", {"x": torch.full((i, 64), i / 100)})
    (pool / "notes.txt").write_text("ignored")
    files = pool_inputs_in(pool)
    assert [p.name for p in files] == ["p1.safetensors", "p2.safetensors", "p10.safetensors"]
    assert import_idp(files, backbone).manifest.token_counts == [1, 2, 10]


def test_idp_refusals(tmp_path, backbone):
    one = _save_st(tmp_path / "one.safetensors", {"x": torch.zeros(2, 64)})
    two = _save_st(tmp_path / "two.safetensors", {"x": torch.zeros(3, 64)})
    with pytest.raises(ArtifactError, match="at least 2 prompts"):
        import_idp([one], backbone)
    with pytest.raises(ArtifactError, match="layer 5 is not a layer"):
        import_idp([one, two], backbone, layer=5)
    with pytest.raises(ArtifactError, match=r"heads \[7\]"):
        import_idp([one, two], backbone, heads=[7])
    narrow = _save_st(tmp_path / "narrow.safetensors", {"x": torch.zeros(3, 32)})
    with pytest.raises(ArtifactError, match="differ in width"):
        import_idp([one, narrow], backbone)
    both = _save_st(
        tmp_path / "both.safetensors", {"x": torch.zeros(1, 64), "y": torch.zeros(1, 64)}
    )
    with pytest.raises(ArtifactError, match="exactly one tensor"):
        import_idp([one, both], backbone)
    dro = import_dro(
        _save_st(tmp_path / "dro.safetensors", {"soft_prompt": torch.zeros(2, 64)}), backbone
    )
    with pytest.raises(ArtifactError, match="placed in the system"):
        import_idp([one, dro.save(tmp_path / "dro-artifact")], backbone)


# -- hard prompts --------------------------------------------------------------------------------
def _hard(tmp_path: Path, name: str, content, backbone: str, **kw) -> HardPromptManifest:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    manifest = import_hard_prompt(path, backbone, **kw).manifest
    assert isinstance(manifest, HardPromptManifest)
    return manifest


def test_hard_prompt_text_and_simple_json(tmp_path, backbone_id):
    text = _hard(tmp_path, "p.txt", "  Answer briefly.\n", backbone_id)
    assert (text.text, text.role, text.backbone) == ("Answer briefly.", "system", backbone_id)
    for key in ("prompt", "instruction", "system_prompt"):
        got = _hard(tmp_path, f"{key}.json", {key: f"Be {key}."}, backbone_id, role="prefix")
        assert (got.text, got.role) == (f"Be {key}.", "prefix")


def test_hard_prompt_scored_candidates_take_the_best(tmp_path, backbone_id):
    cands = [
        {"prompt": "a", "score": 0.2},
        {"prompt": "b", "score": 0.9},
        {"prompt": "c", "score": 0.9},
    ]
    assert _hard(tmp_path, "c.json", cands, backbone_id).text == "b"  # the first of equals
    # OPRO: (instruction, score, step) in results_dict["old_instructions_and_scores"]
    opro = {
        "old_instructions_and_scores": [
            ["Let's think.", 61.5, -1],
            ["Take a deep breath.", 80.2, 3],
        ]
    }
    got = _hard(tmp_path, "opro.json", opro, backbone_id)
    assert got.text == "Take a deep breath." and got.hparams["score"] == 80.2
    assert _hard(
        tmp_path, "triples.json", opro["old_instructions_and_scores"], backbone_id
    ).text == ("Take a deep breath.")


def test_hard_prompt_from_a_saved_dspy_program(tmp_path, backbone_id):
    fields = [{"prefix": "Question:", "description": "${question}"}]
    state = {"traces": [], "train": [], "demos": [], "lm": None}
    new = {
        "qa.predict": {
            **state,
            "signature": {"instructions": "Answer with facts.", "fields": fields},
        },
        "metadata": {"dependency_versions": {"python": "3.11", "dspy": "3.0.0"}},
    }
    got = _hard(tmp_path, "program.json", new, backbone_id)
    assert got.text == "Answer with facts." and got.hparams["predictor"] == "qa.predict"
    old = {"qa": {**state, "signature_instructions": "Old style.", "signature_prefix": "Answer:"}}
    assert _hard(tmp_path, "old.json", old, backbone_id).text == "Old style."
    two = {**new, "rank": {**state, "signature": {"instructions": "Rank them.", "fields": fields}}}
    with pytest.raises(ArtifactError, match="--predictor"):
        _hard(tmp_path, "two.json", two, backbone_id)
    assert _hard(tmp_path, "two.json", two, backbone_id, predictor="rank").text == "Rank them."


def test_hard_prompt_from_ape_result_text(tmp_path, backbone_id):
    ape = "Test score: 0.87\nPrompt: write the antonym of the word.\n"
    got = _hard(tmp_path, "antonyms.txt", ape, backbone_id)
    assert got.text == "write the antonym of the word." and got.hparams["format"] == "ape"


def test_hard_prompt_refusals(tmp_path, backbone_id):
    for name, content, match in [
        ("empty.txt", "  \n", "empty|too_short|at least 1"),
        ("other.json", {"foo": "bar"}, "no prompt found"),
        ("noscore.json", [{"prompt": "a"}, {"prompt": "b"}], "no finite numeric score"),
        ("bad.json", "{not json", "not JSON"),
    ]:
        with pytest.raises(ArtifactError, match=match):
            _hard(tmp_path, name, content, backbone_id)


# -- CLI -----------------------------------------------------------------------------------------
def test_cli_import_peft_and_hard_prompt(prompt_tuning_adapter, tmp_path, backbone, capsys):
    from promptserve.cli import main

    folder, _ = prompt_tuning_adapter
    out = tmp_path / "art"
    assert main(["import", "peft", str(folder), "--backbone", backbone, "-o", str(out)]) == 0
    assert PromptArtifact.load(out).content_id == import_peft(folder, backbone).content_id
    text = tmp_path / "sys.txt"
    text.write_text("Be kind.")
    hard = tmp_path / "hard"
    assert main(["import", "hard-prompt", str(text), "--backbone", "b@1", "-o", str(hard)]) == 0
    assert PromptArtifact.load(hard).manifest.text == "Be kind."
    assert "hard-prompt artifact on b@1" in capsys.readouterr().out
    lone = _save_st(tmp_path / "lone.safetensors", {"x": torch.zeros(1, 64)})
    code = main(
        ["import", "idp", "--prompts", str(lone), "--backbone", backbone, "-o", str(tmp_path / "i")]
    )
    assert code == 2


# -- seeded prompts ------------------------------------------------------------------------------
def test_seeded_prompts_are_scaled_like_the_embeddings(tiny_llm_dir, tmp_path, backbone_id):
    from promptserve.models.llm.export.seeded_prompts import (
        embedding_scale,
        seeded_peft_adapter,
        seeded_pool,
        seeded_soft_prompt,
    )

    std = _base(tiny_llm_dir).get_input_embeddings().weight.std().item()
    assert embedding_scale(tiny_llm_dir) == pytest.approx(std, rel=1e-5)
    soft = seeded_soft_prompt(64, 200, seed=5, backbone=backbone_id, scale=std)
    rows = soft.tensors["prompt_embeddings"]
    assert rows.shape == (200, 64) and rows.std() == pytest.approx(std, rel=0.05)
    again = seeded_soft_prompt(64, 200, seed=5, backbone=backbone_id, scale=std)
    assert again.content_id == soft.content_id
    assert seeded_soft_prompt(64, 200, 6, backbone_id, scale=std).content_id != soft.content_id
    validate_generation(soft, 64, 2, 4)
    pool = seeded_pool(64, [2, 3, 4], seed=1, backbone=backbone_id, layer=1, heads=[0])
    validate_generation(pool, 64, 2, 4)
    assert [pool.tensors[f"prompt.{i}"].shape[0] for i in range(3)] == [2, 3, 4]
    assert not np.allclose(pool.tensors["prompt.0"], pool.tensors["prompt.1"][:2])

    from peft import PeftModel

    folder = seeded_peft_adapter(tiny_llm_dir, tmp_path / "seeded", n=3, seed=9)
    loaded = PeftModel.from_pretrained(_base(tiny_llm_dir), str(folder))
    weight = loaded.prompt_encoder["default"].embedding.weight.detach().numpy()
    assert weight.shape == (3, 64) and weight.std() == pytest.approx(std, rel=0.5)
    imported = import_peft(folder)
    assert imported.manifest.backbone == backbone_id
    np.testing.assert_array_equal(imported.tensors["prompt_embeddings"], weight)
