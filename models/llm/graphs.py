"""The PromptReps forward pass as one exportable torch module.

PromptReps reads both representations from ONE forward pass of the frozen LM over the prompted
text (ielab/PromptReps `modeling.py::PromptRepsLLM.encode_query`, which `encode_passage`
reuses): at the last real token of each right-padded row (`attention_mask.sum(1) - 1`),

- dense  = `hidden_states[-1]` there (the decoder's output after its final norm), L2-normalised
  (every official run passes `--normalize`);
- sparse = the next-token logits there, `log(1 + relu(logits))`.

The official code runs the whole causal LM, so it materialises logits for every position,
[B, T, V] (B=64, T=512, V=128k in fp32 is 16 GiB), then keeps one row per text. This graph
runs the decoder alone, gathers the B last-token hidden states and applies the LM head to
those rows only: the same numbers, without the [B, T, V] tensor. Picking the text's own word
ids and top-k is done outside the graph, in numpy (models/llm/promptreps.py).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

__all__ = ["PromptRepsGraph", "UnsupportedArchitecture"]


class UnsupportedArchitecture(ValueError):
    """A causal LM whose next-token logits are not just its LM head over the last hidden state."""


# Config fields that put something between the LM head and the logits (Gemma 2's soft cap,
# Cohere's scale): the official code would include it, this graph does not, so refuse.
_LOGIT_TRANSFORMS = {"final_logit_softcapping": None, "logit_scale": 1.0}


class PromptRepsGraph(nn.Module):
    """(input_ids int64 [B, T], attention_mask int64 [B, T]) -> (dense [B, H], sparse [B, V]).

    Inputs are right-padded (real tokens first, mask 1 then 0); rows may differ in length.
    """

    name: ClassVar[str] = "promptreps"
    input_names: ClassVar[tuple[str, ...]] = ("input_ids", "attention_mask")
    output_names: ClassVar[tuple[str, ...]] = ("dense", "sparse")
    dynamic_axes: ClassVar[dict[str, dict[int, str]]] = {
        "input_ids": {0: "batch", 1: "seq"},
        "attention_mask": {0: "batch", 1: "seq"},
    }

    def __init__(self, model: Any) -> None:
        super().__init__()
        config = model.config
        for field, neutral in _LOGIT_TRANSFORMS.items():
            value = getattr(config, field, None)
            if value is not None and value != neutral:
                raise UnsupportedArchitecture(
                    f"{type(model).__name__} transforms its logits ({field}={value}); "
                    "PromptRepsGraph supports LMs whose logits are lm_head(hidden state)"
                )
        self.decoder = model.get_decoder()
        self.lm_head = model.get_output_embeddings()
        if self.lm_head is None:
            raise UnsupportedArchitecture(f"{type(model).__name__} has no LM head")

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.decoder(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False
        ).last_hidden_state
        last = attention_mask.sum(dim=1) - 1
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        reps = hidden[rows, last]  # [B, H]: the only positions read
        sparse = torch.log1p(torch.relu(self.lm_head(reps)))
        dense = nn.functional.normalize(reps, p=2.0, dim=-1)
        return dense, sparse
