"""Which torch module computes each of an LLM bundle's graphs: the one mapping export traces
and the torch runtime runs, so the two cannot disagree on which graphs exist."""

from __future__ import annotations

from typing import Any

from promptserve.models.llm.bundle import LlmBundleConfig


def graph_modules(model: Any) -> dict[str, Any]:
    """Graph name -> torch module (eval mode) over a transformers causal LM `model`."""
    from promptserve.models.llm.graphs import PromptRepsGraph

    graphs: dict[str, Any] = {PromptRepsGraph.name: PromptRepsGraph(model)}
    return {name: module.eval() for name, module in graphs.items()}


def bundle_modules(model: Any, config: LlmBundleConfig) -> dict[str, Any]:
    """The modules of every graph a bundle with this config has (today: `promptreps`)."""
    del config  # every LLM bundle has the same graphs; kept for the CLIP-shaped call
    return graph_modules(model)
