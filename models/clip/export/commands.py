"""`promptserve import METHOD ...` for the CLIP family: one command per importer.

The CLI builds its `import` subcommands from every family's `import_commands()`, so a CLIP
method that comes from an official checkpoint adds its command here, beside its importer, and
touches nothing outside models/clip/. Importers are imported when a command runs, so
`promptserve --help` loads no torch.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptserve.models.artifacts import PromptArtifact

DEMO_HINT = "`demo` (a tiny backbone with seeded random weights)"


@dataclass(frozen=True)
class ImportCommand:
    """One `promptserve import` subcommand: its help, its arguments, and what it runs."""

    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], PromptArtifact]


def backbone(text: str) -> Any:
    """`--backbone`: a BackboneSpec string, or `demo` for the seeded tiny backbone."""
    from promptserve.models.clip.backbone import BackboneSpec
    from promptserve.models.clip.export.seeded import seeded_backbone

    return seeded_backbone() if text == "demo" else BackboneSpec.parse(text)


def _common(parser: argparse.ArgumentParser, *, classnames: bool = True) -> None:
    if classnames:
        parser.add_argument(
            "--classnames", required=True, type=Path, help="one class name per line, or a JSON list"
        )
    parser.add_argument(
        "--backbone", required=True, help=f"the backbone it runs on, or {DEMO_HINT}"
    )


def _checkpoint(example: str) -> Callable[[argparse.ArgumentParser], None]:
    def add(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("checkpoint", type=Path, help=f"e.g. {example}")
        _common(parser)

    return add


def _classnames(args: argparse.Namespace) -> list[str]:
    from promptserve.models.clip.export.importers import read_classnames

    return read_classnames(args.classnames)


def _coop_arguments(parser: argparse.ArgumentParser) -> None:
    _checkpoint(".../prompt_learner/model.pth.tar-50")(parser)
    parser.add_argument("--class-token-position", choices=["end", "middle", "front"], default="end")


def _from_checkpoint(
    importer: str, **options: str
) -> Callable[[argparse.Namespace], PromptArtifact]:
    """A command's run: `importer` ("module:function" under importers/) on the checkpoint,
    the class names and the backbone, with `options` (keyword: argument name) passed on."""

    def run(args: argparse.Namespace) -> PromptArtifact:
        module, function = importer.split(":")
        package = "promptserve.models.clip.export.importers"
        fn = getattr(importlib.import_module(f"{package}.{module}"), function)
        artifact: PromptArtifact = fn(
            args.checkpoint,
            classnames=_classnames(args),
            backbone=backbone(args.backbone),
            **{key: getattr(args, name) for key, name in options.items()},
        )
        return artifact

    return run


def _deep_arguments(example: str) -> Callable[[argparse.ArgumentParser], None]:
    def add(parser: argparse.ArgumentParser) -> None:
        _checkpoint(example)(parser)
        parser.add_argument(
            "--ctx-init",
            default="a photo of a",
            help="the training config's CTX_INIT ('' if the context was randomly initialised)",
        )

    return add


def _anomalyclip_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", type=Path, help="e.g. checkpoints/9_12_4_multiscale/epoch_15.pth"
    )
    parser.add_argument(
        "--image-size", type=int, default=518, help="map resolution (official: 518)"
    )
    parser.add_argument("--sigma", type=float, default=4.0, help="Gaussian blur of the map")
    parser.add_argument(
        "--taps",
        type=lambda t: tuple(int(v) for v in t.split(",")),
        default=(6, 12, 18, 24),
        help="1-based layers whose patch tokens make the map",
    )
    parser.add_argument("--dpam-layer", type=int, default=20, help="DPAM on the last N-1 blocks")
    _common(parser, classnames=False)


def _anomalyclip(args: argparse.Namespace) -> PromptArtifact:
    from promptserve.models.clip.export.importers.anomalyclip import import_anomalyclip
    from promptserve.models.clip.methods.anomalyclip import AnomalyCLIPParams

    params = AnomalyCLIPParams(
        taps=args.taps, dpam_layer=args.dpam_layer, image_size=args.image_size, sigma=args.sigma
    )
    return import_anomalyclip(args.checkpoint, backbone=backbone(args.backbone), params=params)


def _templates_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--templates",
        default="imagenet80",
        help="imagenet80, default, or a file with one template per line",
    )
    _common(parser)


def _templates(args: argparse.Namespace) -> PromptArtifact:
    from promptserve.models.clip.export.importers.templates import build_templates

    templates = args.templates
    if templates not in ("imagenet80", "default") and Path(templates).exists():
        templates = [t for t in Path(templates).read_text().splitlines() if t.strip()]
    return build_templates(
        _classnames(args), backbone_id=backbone(args.backbone).id, templates=templates
    )


def _cupl_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompts", type=Path, help="e.g. CuPL_image_prompts.json")
    parser.add_argument(
        "--variant", choices=["cupl", "both"], default="cupl", help="both: add the 80 templates"
    )
    parser.add_argument(
        "--classnames", type=Path, help="subset/order of classes (default: the JSON's)"
    )
    _common(parser, classnames=False)


def _cupl(args: argparse.Namespace) -> PromptArtifact:
    from promptserve.models.clip.export.importers.cupl import import_cupl

    names = _classnames(args) if args.classnames else None
    return import_cupl(
        args.prompts, backbone_id=backbone(args.backbone).id, classnames=names, variant=args.variant
    )


def _l2p_arguments(parser: argparse.ArgumentParser) -> None:
    _checkpoint("output/.../checkpoint/task10_checkpoint.pth or pool.safetensors")(parser)
    parser.add_argument("--top-n", type=int, default=5, help="prompts per image (l2p's top_k)")
    parser.add_argument(
        "--templates", default="default", help="class-text templates: a preset or a file"
    )


def _templates_option(value: str) -> str | list[str]:
    path = Path(value)
    if value not in ("imagenet80", "default") and path.exists():
        return [t for t in path.read_text().splitlines() if t.strip()]
    return value


def _l2p(args: argparse.Namespace) -> PromptArtifact:
    from promptserve.models.clip.export.importers.l2p import import_l2p

    return import_l2p(
        args.checkpoint,
        classnames=_classnames(args),
        backbone=backbone(args.backbone),
        top_n=args.top_n,
        templates=_templates_option(args.templates),
    )


def _mocoop_arguments(parser: argparse.ArgumentParser) -> None:
    _checkpoint(".../prompt_learner/model.pth.tar-25")(parser)
    parser.add_argument(
        "--templates",
        required=True,
        type=Path,
        help="one template per expert, in expert order (first of each PROMPTS group)",
    )


def _mocoop(args: argparse.Namespace) -> PromptArtifact:
    from promptserve.models.clip.export.importers.mocoop import import_mocoop

    templates = [t for t in args.templates.read_text().splitlines() if t.strip()]
    return import_mocoop(
        args.checkpoint,
        classnames=_classnames(args),
        backbone=backbone(args.backbone),
        templates=templates,
    )


COMMANDS: dict[str, ImportCommand] = {
    "coop": ImportCommand(
        "a CoOp checkpoint from the official trainer (Dassl .pth.tar)",
        _coop_arguments,
        _from_checkpoint("coop:import_coop", class_token_position="class_token_position"),
    ),
    "kgcoop": ImportCommand(
        "a KgCoOp checkpoint (htyao89/KgCoOp; CoOp at inference)",
        _checkpoint(".../prompt_learner/model.pth.tar-100"),
        _from_checkpoint("coop:import_kgcoop"),
    ),
    "cocoop": ImportCommand(
        "a CoCoOp checkpoint (meta-net conditioned context)",
        _checkpoint(".../prompt_learner/model.pth.tar-10"),
        _from_checkpoint("cocoop:import_cocoop"),
    ),
    "maple": ImportCommand(
        "a MaPLe checkpoint (multi-modal deep prompts)",
        _deep_arguments(".../MultiModalPromptLearner/model.pth.tar-5"),
        _from_checkpoint("deep:import_maple", ctx_init="ctx_init"),
    ),
    "promptsrc": ImportCommand(
        "a PromptSRC checkpoint (served as IVLP)",
        _deep_arguments(".../VLPromptLearner/model.pth.tar-20"),
        _from_checkpoint("deep:import_ivlp", ctx_init="ctx_init"),
    ),
    "ivlp": ImportCommand(
        "an IVLP checkpoint (independent V-L deep prompts)",
        _deep_arguments(".../VLPromptLearner/model.pth.tar-20"),
        _from_checkpoint("deep:import_ivlp", ctx_init="ctx_init"),
    ),
    "anomalyclip": ImportCommand(
        'an AnomalyCLIP checkpoint ({"prompt_learner": ...} from train.py)',
        _anomalyclip_arguments,
        _anomalyclip,
    ),
    "templates": ImportCommand(
        "a hand-written template ensemble", _templates_arguments, _templates
    ),
    "cupl": ImportCommand(
        "CuPL generated prompts ({classname: [sentence, ...]} JSON)", _cupl_arguments, _cupl
    ),
    "l2p": ImportCommand(
        "an L2P prompt pool (keys + prompts, chosen per image)", _l2p_arguments, _l2p
    ),
    "mocoop": ImportCommand(
        "a MoCoOp checkpoint (mixture of CoOp experts, gated per image)",
        _mocoop_arguments,
        _mocoop,
    ),
}
