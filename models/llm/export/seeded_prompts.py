"""Seeded generation prompts for the tiny seeded LLMs (models/llm/export/seeded.py): a soft
prompt, an IDP pool and a real PEFT prompt-tuning adapter folder, for the demo, the tests and
the benchmarks where no trained prompt exists.

The embeddings are standard normal draws scaled like the backbone's own embedding rows (the
std of its input embedding matrix, `embedding_scale`): a prompt far larger than the rows it
sits among dominates attention and makes every generation the same, one far smaller is as good
as absent. Every figure these prompts produce comes from random weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from promptserve.models.artifacts import PromptArtifact
from promptserve.models.llm.generate.artifacts import PoolManifest, SoftPromptManifest

__all__ = [
    "DEFAULT_SCALE",
    "embedding_scale",
    "seeded_embeddings",
    "seeded_peft_adapter",
    "seeded_pool",
    "seeded_soft_prompt",
]

# The seeded LLMs' embedding std: transformers initialises embeddings N(0, initializer_range)
# and Llama/Qwen2 configs default initializer_range to 0.02.
DEFAULT_SCALE = 0.02


def seeded_embeddings(
    hidden_size: int, n: int, seed: int, scale: float = DEFAULT_SCALE
) -> np.ndarray:
    """[n, hidden_size] float32 draws of N(0, scale^2), the same for the same arguments."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, hidden_size)) * scale).astype(np.float32)


def embedding_scale(model_dir: str | Path) -> float:
    """The std of a model folder's input embedding matrix (read from its safetensors, no
    torch): the scale seeded prompts are drawn at."""
    from promptserve.models.llm.export.generation_importers import read_safetensors

    folder = Path(model_dir)
    for file in sorted(folder.glob("*.safetensors")):
        tensors = read_safetensors(file)
        name = next((k for k in tensors if k.endswith("embed_tokens.weight")), None)
        if name is not None:
            return float(tensors[name].std())
    raise FileNotFoundError(f"{folder}: no *embed_tokens.weight in its safetensors files")


def seeded_soft_prompt(
    hidden_size: int,
    n: int,
    seed: int,
    backbone: str,
    placement: Literal["prefix", "system"] = "prefix",
    *,
    scale: float = DEFAULT_SCALE,
) -> PromptArtifact:
    """A `soft-prompt` artifact of n seeded tokens for `backbone` (its id)."""
    manifest = SoftPromptManifest(
        backbone=backbone,
        num_tokens=n,
        placement=placement,
        source="seeded",
        hparams={"seed": seed, "scale": scale},
    )
    return PromptArtifact(
        manifest, {"prompt_embeddings": seeded_embeddings(hidden_size, n, seed, scale)}
    )


def seeded_pool(
    hidden_size: int,
    counts: Sequence[int],
    seed: int,
    backbone: str,
    layer: int | None = None,
    heads: Sequence[int] | None = None,
    *,
    scale: float = DEFAULT_SCALE,
) -> PromptArtifact:
    """An `idp` pool: prompt i has counts[i] tokens drawn with seed `seed + i`."""
    manifest = PoolManifest(
        backbone=backbone,
        token_counts=list(counts),
        layer=layer,
        heads=list(heads) if heads is not None else None,
        source="seeded",
        hparams={"seed": seed, "scale": scale},
    )
    tensors = {
        f"prompt.{i}": seeded_embeddings(hidden_size, n, seed + i, scale)
        for i, n in enumerate(counts)
    }
    return PromptArtifact(manifest, tensors)


def seeded_peft_adapter(model_dir: str | Path, out_dir: str | Path, n: int, seed: int) -> Path:
    """A real PEFT `PROMPT_TUNING` adapter folder for the model in `model_dir`, written by
    peft's own save_pretrained; its prompt is `seeded_embeddings(hidden, n, seed,
    embedding_scale(model_dir))`, so `import peft` of it equals that draw."""
    import torch
    from peft import PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    config = PromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=n, prompt_tuning_init="RANDOM"
    )
    peft_model = get_peft_model(model, config)
    hidden = int(model.config.hidden_size)
    values = seeded_embeddings(hidden, n, seed, embedding_scale(model_dir))
    encoder: Any = peft_model.prompt_encoder["default"]  # peft's PromptEmbedding
    with torch.no_grad():
        encoder.embedding.weight.copy_(torch.from_numpy(values))
    out = Path(out_dir)
    peft_model.save_pretrained(str(out))
    return out
