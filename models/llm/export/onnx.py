"""`promptserve export llm`: a causal LM -> ONNX bundle with a parity report.

The bundle holds one graph, `promptreps` (models/llm/graphs.py: dense and sparse from one
forward pass), the backbone's fast tokenizer as `tokenizer.json`, and bundle.json. Export
fails loudly when ONNX Runtime and torch disagree above tolerance (after writing the report),
so a bundle that exists is a bundle that matches its backbone, as CLIP's export does.

The graph is traced with `torch.onnx.export(dynamo=True)` and dynamic batch and sequence
axes. transformers' mask code (the SDPA causal + padding mask built from `attention_mask`)
exports as is under torch.export in transformers 5, so no eager-attention fallback is needed:
the traced graph is checked on a batch of another size and other lengths than the one traced.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from promptserve.exporters.onnx import (
    FP32_TOLERANCE,
    ExportParityError,
    check_report,
    parity,
    trace,
)
from promptserve.models.bundle import BUNDLE_FILE, BundleManifest, GraphInfo, read_signature
from promptserve.models.llm.backbone import LlmBackboneSpec
from promptserve.models.llm.bundle import LlmBundleConfig
from promptserve.models.llm.graph_set import graph_modules
from promptserve.models.llm.graphs import PromptRepsGraph

__all__ = ["FP32_TOLERANCE", "ExportParityError", "export_bundle"]

PAD_TO_MULTIPLE_OF = 16
MAX_BATCH = 1 << 16
# Weights above this go to an external data file next to the graph (protobuf caps a file at
# 2 GiB; every real LLM is above it).
EXTERNAL_DATA_BYTES = 1 << 30
# Traced on one batch, checked on another (other size, other lengths, a one-token row), so a
# shape the trace fixed by mistake shows up as a parity failure, not at serving time.
_TRACE_TEXTS = ["What is the capital of France?", "A short passage."]
_PARITY_TEXTS = [
    "Query: how does a volcano erupt. Use one word to represent the query.",
    "Passage: Espresso is brewed by forcing hot water through finely ground coffee beans "
    "under pressure. Use one word to represent the passage in a retrieval task.",
    "penguins",
]


def export_bundle(
    backbone: str | LlmBackboneSpec,
    out_dir: str | Path,
    *,
    opset: int | None = None,
    tolerance: float = FP32_TOLERANCE,
    progress: bool = True,
) -> Path:
    """Export `backbone`'s PromptReps graph to ONNX, write its tokenizer and bundle.json, and
    check ONNX Runtime against torch (max |diff| <= `tolerance`, fp32). Returns `out_dir`.

    Example:
        >>> export_bundle("hf-hub:meta-llama/Meta-Llama-3-8B-Instruct", "bundles/llama3-8b")
        >>> export_bundle("local-dir:/models/my-llm", "bundles/my-llm", progress=False)
    """
    spec = backbone if isinstance(backbone, LlmBackboneSpec) else LlmBackboneSpec.parse(backbone)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = tqdm(total=5, desc="export", disable=not progress, unit="step")

    steps.set_postfix_str("load backbone")
    model = spec.load()
    tokenizer = spec.load_tokenizer()
    steps.update()

    module: PromptRepsGraph = graph_modules(model)[PromptRepsGraph.name]
    lm_head = model.get_output_embeddings()
    vocab_size, hidden_size = (int(n) for n in lm_head.weight.shape)
    max_positions = int(getattr(model.config, "max_position_embeddings", 0) or 1 << 17)
    # PromptReps pads with EOS when the tokenizer has no pad token (encode.py::main)
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0

    def batch(texts: list[str], *extra: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [tokenizer(t, add_special_tokens=False).input_ids for t in texts] + list(extra)
        return _right_padded(rows, pad_id, PAD_TO_MULTIPLE_OF)

    graph_file = f"{PromptRepsGraph.name}.onnx"
    steps.set_postfix_str("export promptreps graph")
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    trace(
        module,
        batch(_TRACE_TEXTS),
        out / graph_file,
        {"batch": (1, MAX_BATCH), "seq": (1, max_positions)},
        opset=opset,
        external_data=params > EXTERNAL_DATA_BYTES,
    )
    steps.update()

    steps.set_postfix_str("tokenizer")
    tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))
    steps.update()

    steps.set_postfix_str("parity")
    g = torch.Generator().manual_seed(0)
    random_row = torch.randint(0, len(tokenizer), (45,), generator=g).tolist()
    parity_args = batch(_PARITY_TEXTS, random_row, random_row[:1])
    report = {PromptRepsGraph.name: parity(module, out / graph_file, parity_args, tolerance)}
    steps.update()

    inputs, outputs = read_signature(out / graph_file)
    config = LlmBundleConfig(
        backbone=spec.spec,
        architecture=type(model).__name__,
        hidden_size=hidden_size,
        vocab_size=vocab_size,
        max_positions=max_positions,
        num_layers=int(model.config.num_hidden_layers),
        num_heads=int(model.config.num_attention_heads),
        tokenizer_file="tokenizer.json",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=pad_id,
        pad_to_multiple_of=PAD_TO_MULTIPLE_OF,
    )
    manifest = BundleManifest(
        family="llm",
        backbone_id=spec.id,
        config=config,
        graphs={
            PromptRepsGraph.name: GraphInfo(
                file=graph_file,
                inputs=list(module.input_names),
                outputs=list(module.output_names),
                input_specs=inputs,
                output_specs=outputs,
            )
        },
        parity=report,
    )
    (out / BUNDLE_FILE).write_text(manifest.model_dump_json(indent=2))
    steps.update()
    steps.close()
    check_report(report, what=f"ONNX export of {spec.id}", where=out / BUNDLE_FILE)
    return out


def _right_padded(
    rows: list[list[int]], pad_id: int, multiple: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) int64, real tokens first, padded to a multiple of
    `multiple` (as the official collator: padding_side='right', pad_to_multiple_of=16)."""
    longest = max(len(r) for r in rows)
    width = -(-longest // multiple) * multiple
    ids = np.full((len(rows), width), pad_id, np.int64)
    mask = np.zeros((len(rows), width), np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)
