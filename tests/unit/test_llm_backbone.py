"""LLM backbone specs (parsing, ids, errors), the seeded tiny LLMs (determinism, layout,
tokenizer) and the LLM bundle section.

Expected ids are computed here from the files (sha256 of the weight bytes), not by the code
under test; the tiny models' shapes are the ones the brief fixes (hidden 64, 2 layers, 4 heads
of which 2 kv heads, untied embeddings).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time

import pytest

from promptserve.models.llm.backbone import BackboneError, LlmBackboneSpec

# -- parsing -----------------------------------------------------------------------------------


def test_hub_spec_without_revision():
    spec = LlmBackboneSpec.parse("hf-hub:meta-llama/Meta-Llama-3-8B-Instruct")
    assert (spec.source, spec.name, spec.revision) == (
        "hf-hub",
        "meta-llama/Meta-Llama-3-8B-Instruct",
        None,
    )
    assert spec.id == "meta-llama/Meta-Llama-3-8B-Instruct"
    assert spec.spec == "hf-hub:meta-llama/Meta-Llama-3-8B-Instruct"


def test_hub_spec_with_revision_pins_the_id():
    spec = LlmBackboneSpec.parse("hf-hub:Qwen/Qwen2.5-0.5B-Instruct@7ae5576")
    assert spec.name == "Qwen/Qwen2.5-0.5B-Instruct"
    assert spec.revision == "7ae5576"
    assert spec.id == "Qwen/Qwen2.5-0.5B-Instruct@7ae5576"
    assert LlmBackboneSpec.parse(spec.spec) == spec  # the recorded string reads back


def test_hub_name_without_org():
    assert LlmBackboneSpec.parse("hf-hub:gpt2").id == "gpt2"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("meta-llama/Meta-Llama-3-8B", "hf-hub:ORG/NAME"),  # no scheme
        ("hf:meta-llama/x", "hf-hub:ORG/NAME"),  # unknown scheme
        ("hf-hub:", "hf-hub:ORG/NAME"),
        ("hf-hub:a/b/c", "hf-hub:ORG/NAME"),
        ("hf-hub:org/name with space", "hf-hub:ORG/NAME"),
        ("hf-hub:org/name@", "empty revision"),
        ("local-dir:", "local-dir:PATH"),
    ],
)
def test_bad_specs_say_what_is_expected(text, words):
    with pytest.raises(BackboneError, match=words):
        LlmBackboneSpec.parse(text)


def test_local_dir_path_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = LlmBackboneSpec.parse("local-dir:models/x")
    assert spec.name == str(tmp_path / "models" / "x")
    assert spec.spec == f"local-dir:{tmp_path / 'models' / 'x'}"


def test_missing_local_folder_is_a_clear_error(tmp_path):
    spec = LlmBackboneSpec.parse(f"local-dir:{tmp_path / 'nope'}")
    with pytest.raises(BackboneError, match="no such folder"):
        spec.id  # noqa: B018


def test_folder_without_config_is_not_a_model(tmp_path):
    with pytest.raises(BackboneError, match=r"no config\.json.*save_pretrained"):
        LlmBackboneSpec.parse(f"local-dir:{tmp_path}").id  # noqa: B018


def test_folder_without_weights_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(BackboneError, match="holds no weights"):
        LlmBackboneSpec.parse(f"local-dir:{tmp_path}").id  # noqa: B018


def test_parsing_and_the_serving_modules_need_no_torch():
    code = (
        "import sys\n"
        "from promptserve.models.llm.backbone import LlmBackboneSpec\n"
        "import promptserve.models.llm.bundle, promptserve.models.llm.runtime\n"
        "import promptserve.models.llm.family\n"
        "LlmBackboneSpec.parse('hf-hub:org/name@main').id\n"
        "print([m for m in ('torch', 'transformers') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- local ids ---------------------------------------------------------------------------------


def test_local_id_is_folder_name_and_weight_digest(tiny_llm_dir):
    weights = (tiny_llm_dir / "model.safetensors").read_bytes()
    want = f"{tiny_llm_dir.name}@{hashlib.sha256(weights).hexdigest()[:16]}"
    assert LlmBackboneSpec.parse(f"local-dir:{tiny_llm_dir}").id == want


def test_local_id_follows_the_weights(tiny_llm_dir, tmp_path):
    copy = shutil.copytree(tiny_llm_dir, tmp_path / tiny_llm_dir.name)
    same = LlmBackboneSpec.parse(f"local-dir:{copy}").id
    assert same == LlmBackboneSpec.parse(f"local-dir:{tiny_llm_dir}").id
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 1  # one bit of one weight
    (copy / "model.safetensors").write_bytes(bytes(data))
    assert LlmBackboneSpec.parse(f"local-dir:{copy}").id != same


# -- seeded tiny models ------------------------------------------------------------------------


def test_same_seed_same_bytes(tmp_path):
    from promptserve.models.llm.export.seeded import build_tiny_llm

    a = build_tiny_llm(tmp_path / "a", "llama", seed=3)
    b = build_tiny_llm(tmp_path / "b", "llama", seed=3)
    c = build_tiny_llm(tmp_path / "c", "llama", seed=4)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()
    assert (a / "tokenizer.json").read_bytes() == (c / "tokenizer.json").read_bytes()


def test_build_is_fast_once_imported(tmp_path):
    from promptserve.models.llm.export.seeded import build_tiny_llm

    build_tiny_llm(tmp_path / "warm", "qwen2")  # imports transformers' modules
    start = time.perf_counter()
    build_tiny_llm(tmp_path / "timed", "qwen2", seed=1)
    assert time.perf_counter() - start < 5.0


def test_building_leaves_the_global_seed_alone(tmp_path):
    torch = pytest.importorskip("torch")
    from promptserve.models.llm.export.seeded import build_tiny_llm

    torch.manual_seed(123)
    want = torch.rand(4)
    torch.manual_seed(123)
    build_tiny_llm(tmp_path / "m", "llama", seed=0)
    assert torch.equal(torch.rand(4), want)


@pytest.mark.parametrize(
    ("arch", "cls"), [("llama", "LlamaForCausalLM"), ("qwen2", "Qwen2ForCausalLM")]
)
def test_tiny_model_layout(arch, cls, tiny_llm_dir, tiny_qwen_dir):
    folder = {"llama": tiny_llm_dir, "qwen2": tiny_qwen_dir}[arch]
    spec = LlmBackboneSpec.parse(f"local-dir:{folder}")
    model = spec.load()
    tokenizer = spec.load_tokenizer()
    cfg = model.config
    assert type(model).__name__ == cls
    assert not model.training
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size) == (64, 2, 128)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads) == (4, 2)
    assert cfg.max_position_embeddings == 1024
    assert cfg.vocab_size == len(tokenizer)
    assert next(model.parameters()).dtype.is_floating_point
    assert str(next(model.parameters()).dtype) == "torch.float32"
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    assert emb.data_ptr() != head.data_ptr() and not bool((emb == head).all())  # untied
    files = sorted(p.name for p in folder.iterdir())
    assert "model.safetensors" in files and "tokenizer.json" in files


def test_tiny_tokenizer_is_llama3_like(tiny_llm_dir):
    tokenizer = LlmBackboneSpec.parse(f"local-dir:{tiny_llm_dir}").load_tokenizer()
    assert tokenizer.is_fast
    assert 2000 <= len(tokenizer) <= 4000
    assert tokenizer.pad_token is None  # as Llama-3: PromptReps pads with EOS
    assert tokenizer.bos_token == "<|begin_of_text|>"
    assert tokenizer.eos_token == "<|end_of_text|>"
    for special in ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"):
        ids = tokenizer(f"x{special}y", add_special_tokens=False).input_ids
        assert tokenizer.convert_tokens_to_ids(special) in ids  # one token, not split
    text = "Espresso is brewed under pressure; penguins huddle in Antarctica. Ünïcödé ✓"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert tokenizer.decode(ids) == text  # byte-level: any text round-trips
    with_bos = tokenizer(text).input_ids
    assert with_bos == [tokenizer.bos_token_id, *ids]
    # common English words are single tokens (the built-in corpus trained them)
    assert len(tokenizer(" the", add_special_tokens=False).input_ids) == 1


def test_tiny_qwen_tokenizer_is_qwen2_like(tiny_qwen_dir):
    """transformers loads a qwen2 folder's tokenizer as Qwen2Tokenizer (its own pipeline):
    the tiny one must load as built, with Qwen2's specials and no token past the vocabulary."""
    from tokenizers import Tokenizer

    tokenizer = LlmBackboneSpec.parse(f"local-dir:{tiny_qwen_dir}").load_tokenizer()
    assert len(tokenizer) == 2048  # nothing added on load
    assert tokenizer.bos_token is None
    assert tokenizer.eos_token == tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.pad_token_id < 2048
    saved = Tokenizer.from_file(str(tiny_qwen_dir / "tokenizer.json"))
    text = "Café 12345 it's <|im_end|> ok  spaces\n\nÜnïcödé ✓"
    ids = saved.encode(text, add_special_tokens=False).ids
    assert tokenizer(text, add_special_tokens=False).input_ids == ids
    assert tokenizer(text).input_ids == ids  # no BOS
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in ids


def test_demo_dir_is_built_once(tmp_path):
    from promptserve.models.llm.export.seeded import demo_llm_dir

    first = demo_llm_dir(directory=tmp_path)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    again = demo_llm_dir(directory=tmp_path)
    assert again == first
    assert (again / "model.safetensors").stat().st_mtime_ns == stamp
    assert json.loads((first / "config.json").read_text())["model_type"] == "llama"


# -- the bundle section ------------------------------------------------------------------------


def _config(**overrides):
    from promptserve.models.llm.bundle import LlmBundleConfig

    fields = {
        "backbone": "hf-hub:org/name",
        "architecture": "LlamaForCausalLM",
        "hidden_size": 64,
        "vocab_size": 2048,
        "max_positions": 1024,
        "pad_token_id": 1,
    }
    return LlmBundleConfig(**(fields | overrides))


def test_bundle_config_defaults():
    cfg = _config()
    assert (cfg.tokenizer_file, cfg.pad_to_multiple_of, cfg.dtype) == (
        "tokenizer.json",
        16,
        "float32",
    )
    assert cfg.backbone_spec == LlmBackboneSpec.parse("hf-hub:org/name")


def test_bundle_config_refuses_a_bad_backbone():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="hf-hub:ORG/NAME"):
        _config(backbone="meta-llama/x")


def test_llm_config_reads_its_section_and_refuses_a_clip_bundle(tmp_path):
    from promptserve.models.bundle import BUNDLE_FILE, Bundle, BundleError, BundleManifest
    from promptserve.models.clip.backbone import BackboneSpec
    from promptserve.models.clip.bundle import ClipBundleConfig, PreprocessConfig
    from promptserve.models.llm.bundle import llm_config

    llm_dir, clip_dir = tmp_path / "llm", tmp_path / "clip"
    manifest = BundleManifest(family="llm", backbone_id="org/name", graphs={}, config=_config())
    llm_dir.mkdir()
    (llm_dir / BUNDLE_FILE).write_text(manifest.model_dump_json())
    assert llm_config(Bundle(llm_dir)) == _config()  # read back, typed

    clip = ClipBundleConfig(
        backbone=BackboneSpec(model="ViT-B-32", pretrained="openai"),
        embed_dim=512,
        text_width=512,
        context_length=77,
        logit_scale=100.0,
        preprocess=PreprocessConfig(size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    )
    manifest = BundleManifest(family="clip", backbone_id="ViT-B-32", graphs={}, config=clip)
    clip_dir.mkdir()
    (clip_dir / BUNDLE_FILE).write_text(manifest.model_dump_json())
    with pytest.raises(BundleError, match="'clip' bundle; this needs LlmBundleConfig"):
        llm_config(Bundle(clip_dir))
