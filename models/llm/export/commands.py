"""`promptserve import promptreps ...`: a PromptReps representation prompt as an artifact.

The official prompts (ielab/PromptReps `prompts/<model>/`, vendored byte-exact in
models/llm/prompts/) are built in by model name; a user's own prompt is four text files read
the way the official code reads them (`open().read().strip()`), so it can be registered under
its own prompt_id and A/B tested against the official one.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from promptserve.models.artifacts import PromptArtifact
from promptserve.models.llm.export.generation_importers import GENERATION_COMMANDS

DEMO_HINT = "`demo` (the tiny seeded LLM the demo and tests use)"
SIDES = ("query_prefix", "query_suffix", "passage_prefix", "passage_suffix")


class PromptRepsCommand:
    help = "a PromptReps prompt (built in by model, or your own four prompt files)"

    @staticmethod
    def arguments(parser: argparse.ArgumentParser) -> None:
        from promptserve.models.llm.artifacts import builtin_prompts

        parser.add_argument(
            "--model",
            choices=builtin_prompts(),
            help="the official prompt of this model family (default: llama3)",
        )
        parser.add_argument(
            "--backbone", required=True, help=f"the backbone id it runs on, or {DEMO_HINT}"
        )
        for side in SIDES:
            parser.add_argument(
                f"--{side.replace('_', '-')}",
                type=Path,
                help=f"a file holding the {side.replace('_', ' ')} (replaces the built-in one)",
            )
        parser.add_argument("--query-max-len", type=int, help="query tokens read (default 512)")
        parser.add_argument("--passage-max-len", type=int, help="passage tokens read (default 512)")
        parser.add_argument("--top-k", type=int, help="sparse terms kept per text (default 128)")

    @staticmethod
    def run(args: argparse.Namespace) -> PromptArtifact:
        from promptserve.models.llm.artifacts import builtin_prompt

        backbone = demo_backbone_id() if args.backbone == "demo" else args.backbone
        artifact = builtin_prompt(args.model or "llama3", backbone)
        manifest = artifact.manifest
        update: dict[str, Any] = {
            side: Path(path).read_text(encoding="utf-8").strip()
            for side in SIDES
            if (path := getattr(args, side)) is not None
        }
        hparams = dict(manifest.hparams)
        for name in ("query_max_len", "passage_max_len", "top_k"):
            if getattr(args, name) is not None:
                hparams[name] = getattr(args, name)
        if update:
            update["source"] = "custom prompt files"
        update["hparams"] = hparams
        return PromptArtifact(manifest.model_copy(update=update), artifact.tensors)


def demo_backbone_id() -> str:
    """The backbone id of the demo's tiny seeded LLM (built on first use)."""
    from promptserve.models.llm.backbone import LlmBackboneSpec
    from promptserve.models.llm.export.seeded import demo_llm_dir

    return LlmBackboneSpec.parse(f"local-dir:{demo_llm_dir()}").id


# PromptReps, then the generation prompts (PEFT, DRO, IDP pools, hard prompts)
COMMANDS: dict[str, Any] = {"promptreps": PromptRepsCommand(), **GENERATION_COMMANDS}
