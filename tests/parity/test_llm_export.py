"""The LLM family's `promptreps` graph, its ONNX export and its runtimes, on both tiny
seeded architectures (Llama, Qwen2).

The reference is the official computation (ielab/PromptReps `modeling.py::
PromptRepsLLM.encode_query`), written here with the Hugging Face model's own forward:
`model(**inputs, output_hidden_states=True)`, then at each row's last real token
`hidden_states[-1]` (L2-normalised) and `log(1 + relu(logits))`. Inputs are right-padded
batches of mixed lengths, as the official collator makes them (padding_side='right',
pad_to_multiple_of=16, pad = EOS when the tokenizer has none).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")

from promptserve.models.bundle import BUNDLE_FILE, Bundle  # noqa: E402
from promptserve.models.llm.backbone import LlmBackboneSpec  # noqa: E402
from promptserve.models.llm.bundle import llm_config  # noqa: E402
from promptserve.models.llm.runtime import LlmGraphs  # noqa: E402
from promptserve.serving.engines.base import EngineOptions, create_engine  # noqa: E402

TOL = 1e-4
TEXTS = [
    "Use one word to represent the passage in a retrieval task.",
    "glaciers",
    "The quick brown fox jumps over the lazy dog while the cat sleeps quietly beside the "
    "warm kitchen stove, and the old church bell rings nine times in the small village.",
    "Query: espresso coffee pressure",
]


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def case(request, tiny_llm_dir, tiny_qwen_dir, tiny_llm_bundle, tiny_qwen_bundle):
    """(model, tokenizer, bundle) of one architecture; the model loaded as a user would."""
    folder, bundle = {
        "llama": (tiny_llm_dir, tiny_llm_bundle),
        "qwen2": (tiny_qwen_dir, tiny_qwen_bundle),
    }[request.param]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(folder), Bundle(bundle)


def right_padded(tokenizer, texts, multiple=16):
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = [tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    width = -(-max(map(len, rows)) // multiple) * multiple
    ids = np.full((len(rows), width), pad, np.int64)
    mask = np.zeros((len(rows), width), np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = row, 1
    return ids, mask


def reference(model, ids, mask):
    """PromptRepsLLM.encode_query, on the HF model's full forward."""
    ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
    with torch.no_grad():
        out = model(input_ids=ids_t, attention_mask=mask_t, output_hidden_states=True)
    last = mask_t.sum(dim=1) - 1
    rows = torch.arange(len(ids_t))
    logits = out.logits[rows, last]
    hidden = out.hidden_states[-1][rows, last]
    dense = hidden / hidden.norm(p=2, dim=-1, keepdim=True)
    return dense.numpy(), torch.log(1 + torch.relu(logits)).numpy()


def max_diff(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def test_graph_equals_the_hf_forward(case):
    from promptserve.models.llm.graphs import PromptRepsGraph

    model, tokenizer, _ = case
    ids, mask = right_padded(tokenizer, TEXTS)
    assert len(set(mask.sum(1))) == len(TEXTS)  # mixed lengths
    with torch.no_grad():
        dense, sparse = PromptRepsGraph(model)(torch.from_numpy(ids), torch.from_numpy(mask))
    want_dense, want_sparse = reference(model, ids, mask)
    assert dense.shape == (len(TEXTS), model.config.hidden_size)
    assert sparse.shape == (len(TEXTS), model.config.vocab_size)
    assert max_diff(dense, want_dense) < 1e-5
    assert max_diff(sparse, want_sparse) < 1e-5
    assert bool((sparse >= 0).all()) and bool((sparse > 0).any())
    np.testing.assert_allclose(np.linalg.norm(dense.numpy(), axis=1), 1.0, atol=1e-6)


def test_lm_head_sees_one_row_per_text(case):
    """The [B, T, V] logits the official code builds are never made: the head gets [B, H]."""
    from promptserve.models.llm.graphs import PromptRepsGraph

    model, tokenizer, _ = case
    graph = PromptRepsGraph(model)
    shapes = []
    hook = graph.lm_head.register_forward_hook(lambda m, i, o: shapes.append(tuple(i[0].shape)))
    try:
        ids, mask = right_padded(tokenizer, TEXTS)
        with torch.no_grad():
            graph(torch.from_numpy(ids), torch.from_numpy(mask))
    finally:
        hook.remove()
    assert shapes == [(len(TEXTS), model.config.hidden_size)]


@pytest.mark.parametrize(
    "texts",
    [TEXTS, TEXTS[1:2], ["a"], TEXTS * 3],
    ids=["mixed", "one-row", "one-token", "batch-12"],
)
def test_onnx_runtime_equals_the_hf_forward(case, texts):
    """Shapes other than the traced one (batch 1 and 12, a one-token sequence)."""
    model, tokenizer, bundle = case
    graphs = LlmGraphs(create_engine("onnxruntime", bundle, EngineOptions(threads=1)))
    ids, mask = right_padded(tokenizer, texts)
    dense, sparse = graphs.encode(ids, mask)
    want_dense, want_sparse = reference(model, ids, mask)
    assert dense.dtype == sparse.dtype == np.float32
    assert max_diff(dense, want_dense) <= TOL
    assert max_diff(sparse, want_sparse) <= TOL


def test_long_sequence(case):
    """A 300-token row padded next to a short one: positions well past the traced length."""
    model, tokenizer, bundle = case
    rng = np.random.default_rng(0)
    long_row = rng.integers(0, len(tokenizer), 300).tolist()
    ids, mask = right_padded(tokenizer, ["short"])
    wide = np.full((2, 304), ids[0, -1], np.int64)
    wide_mask = np.zeros_like(wide)
    wide[0, :300], wide_mask[0, :300] = long_row, 1
    n = int(mask[0].sum())
    wide[1, :n], wide_mask[1, :n] = ids[0, :n], 1
    graphs = LlmGraphs(create_engine("onnxruntime", bundle, EngineOptions(threads=1)))
    got = graphs.encode(wide, wide_mask)
    for g, w in zip(got, reference(model, wide, wide_mask), strict=True):
        assert max_diff(g, w) <= TOL


def test_padding_and_batch_mates_change_nothing(case):
    """A right-padded causal LM's outputs for a row do not depend on how far it is padded or
    what it is batched with (what length-bucketed batching relies on)."""
    _, tokenizer, bundle = case
    graphs = LlmGraphs(create_engine("onnxruntime", bundle, EngineOptions(threads=1)))
    ids, mask = right_padded(tokenizer, TEXTS)
    together = graphs.encode(ids, mask)
    for i, text in enumerate(TEXTS):
        alone = graphs.encode(*right_padded(tokenizer, [text], multiple=1))
        for t, a in zip(together, alone, strict=True):
            assert max_diff(t[i : i + 1], a) <= 1e-5


def test_torch_runtime_runs_the_same_graph(case):
    model, tokenizer, bundle = case
    graphs = LlmGraphs(create_engine("torch", bundle, EngineOptions(threads=1)))
    graphs.warmup()
    ids, mask = right_padded(tokenizer, TEXTS)
    got = graphs.encode(ids, mask)
    onnx = LlmGraphs(create_engine("onnxruntime", bundle, EngineOptions(threads=1)))
    for g, w, o in zip(got, reference(model, ids, mask), onnx.encode(ids, mask), strict=True):
        assert max_diff(g, w) < 1e-5
        assert max_diff(g, o) <= TOL


def test_bundle_records_what_serving_needs(case):
    model, tokenizer, bundle = case
    folder = Path(model.name_or_path)
    cfg = llm_config(bundle)
    spec = LlmBackboneSpec.parse(f"local-dir:{folder}")
    assert bundle.manifest.family == "llm"
    assert bundle.backbone_id == spec.id
    assert cfg.backbone == f"local-dir:{folder}"
    assert cfg.architecture == type(model).__name__
    assert (cfg.hidden_size, cfg.vocab_size, cfg.max_positions) == (64, 2048, 1024)
    assert cfg.eos_token_id == tokenizer.eos_token_id
    assert cfg.bos_token_id == tokenizer.bos_token_id
    want_pad = tokenizer.pad_token_id
    assert cfg.pad_token_id == (tokenizer.eos_token_id if want_pad is None else want_pad)
    assert cfg.pad_to_multiple_of == 16
    info = bundle.manifest.graphs["promptreps"]
    assert (info.inputs, info.outputs) == (["input_ids", "attention_mask"], ["dense", "sparse"])
    inputs, outputs = bundle.signature("promptreps")
    assert [(t.name, t.type) for t in inputs] == [
        ("input_ids", "tensor(int64)"),
        ("attention_mask", "tensor(int64)"),
    ]
    assert all(isinstance(d, str) for t in inputs for d in t.shape)  # batch and seq dynamic
    assert [t.shape[1] for t in outputs] == [64, 2048]
    parity = bundle.manifest.parity["promptreps"]
    assert parity.passed and parity.max_abs_diff <= TOL and parity.tolerance == TOL
    assert parity.batch >= 4


def test_bundle_tokenizer_encodes_as_the_backbone(case):
    from tokenizers import Tokenizer

    _, tokenizer, bundle = case
    saved = Tokenizer.from_file(str(bundle.dir / llm_config(bundle).tokenizer_file))
    for text in [*TEXTS, "Ünïcödé ✓ 12345\n\n<|eot_id|>"]:
        assert (
            saved.encode(text, add_special_tokens=False).ids
            == tokenizer(text, add_special_tokens=False).input_ids
        )


def test_runtime_refuses_bad_batches(tiny_llm_bundle):
    graphs = LlmGraphs(create_engine("onnxruntime", Bundle(tiny_llm_bundle), EngineOptions()))
    ids = np.ones((2, 4), np.int64)
    with pytest.raises(ValueError, match="same"):
        graphs.encode(ids, np.ones((2, 5), np.int64))
    with pytest.raises(ValueError, match="right-padded"):
        graphs.encode(ids, np.array([[0, 0, 1, 1], [1, 1, 1, 1]]))  # left padding
    with pytest.raises(ValueError, match="right-padded"):
        graphs.encode(ids, np.array([[1, 1, 1, 1], [0, 0, 0, 0]]))  # an empty row
    with pytest.raises(ValueError, match="1024 positions"):
        graphs.encode(np.ones((1, 1025), np.int64), np.ones((1, 1025), np.int64))


def test_parity_failure_is_reported_then_raised(tiny_llm_dir, tmp_path):
    """Above tolerance, export writes bundle.json with the failing report, then raises."""
    from promptserve.models.llm.export.onnx import ExportParityError, export_bundle

    with pytest.raises(ExportParityError, match=r"promptreps max\|diff\|="):
        # no result can pass a negative tolerance
        export_bundle(f"local-dir:{tiny_llm_dir}", tmp_path, tolerance=-1.0, progress=False)
    report = json.loads((tmp_path / BUNDLE_FILE).read_text())["parity"]["promptreps"]
    assert report["passed"] is False and report["tolerance"] == -1.0
