"""`promptserve export`: backbone -> ONNX bundle with a parity report.

Export fails loudly when ONNX Runtime and torch disagree above tolerance, so a bundle that
exists is a bundle that matches its backbone.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from promptserve.exporters.backbones import BackboneSpec
from promptserve.exporters.bundle import (
    BUNDLE_FILE,
    BundleManifest,
    GraphInfo,
    ParityResult,
    PreprocessConfig,
)
from promptserve.exporters.graphs import TextGraph, VisionGraph

FP32_TOLERANCE = 1e-4
_PARITY_TEXTS = ["a photo of a dog.", "X X X X a cat.", "an origami airplane in the snow."]


class ExportParityError(RuntimeError):
    """The exported graph does not reproduce torch within tolerance."""


def export_bundle(
    spec: BackboneSpec,
    out_dir: str | Path,
    *,
    tolerance: float = FP32_TOLERANCE,
    progress: bool = True,
) -> BundleManifest:
    """Export `spec`'s vision and text graphs to ONNX and check them against torch.

    Example:
        >>> export_bundle(BackboneSpec.parse("ViT-B-32:openai"), "bundles/vit-b-32")
    """
    import open_clip

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = tqdm(total=6, desc="export", disable=not progress, unit="step")

    steps.set_postfix_str("load backbone")
    model = spec.load()
    steps.update()

    vision, text = VisionGraph(model).eval(), TextGraph(model).eval()
    size = _image_size(model)
    pixels = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    steps.set_postfix_str("export vision graph")
    _export(vision, (pixels,), out / "vision.onnx", batch_inputs=VisionGraph.input_names)
    steps.update()

    tokenizer = open_clip.get_tokenizer(spec.arch)
    ids = tokenizer(_PARITY_TEXTS)
    with torch.no_grad():
        emb = model.token_embedding(ids)
    eot = ids.argmax(dim=-1)
    steps.set_postfix_str("export text graph")
    _export(
        text, (emb, eot), out / "text.onnx", batch_inputs=TextGraph.input_names,
        seq_inputs={"token_embeddings": int(model.context_length)},
    )  # fmt: skip
    steps.update()

    steps.set_postfix_str("tokenizer + embeddings")
    from safetensors.torch import save_file

    save_file(
        {"weight": model.token_embedding.weight.detach().contiguous()},
        out / "token_embedding.safetensors",
    )
    shutil.copyfile(open_clip.tokenizer.default_bpe(), out / "bpe_simple_vocab_16e6.txt.gz")
    steps.update()

    steps.set_postfix_str("parity")
    parity = {
        "vision": _parity(
            vision, out / "vision.onnx", (pixels,), VisionGraph.input_names, tolerance
        ),
        "text": _parity(text, out / "text.onnx", (emb, eot), TextGraph.input_names, tolerance),
    }
    steps.update()

    manifest = BundleManifest(
        backbone=spec,
        backbone_id=spec.id,
        embed_dim=int(model.text_projection.shape[-1]),
        text_width=int(model.token_embedding.weight.shape[1]),
        context_length=int(model.context_length),
        logit_scale=float(model.logit_scale.detach().exp()),
        preprocess=_preprocess_cfg(model),
        graphs={
            "vision": GraphInfo(
                file="vision.onnx",
                inputs=list(VisionGraph.input_names),
                outputs=list(VisionGraph.output_names),
            ),
            "text": GraphInfo(
                file="text.onnx",
                inputs=list(TextGraph.input_names),
                outputs=list(TextGraph.output_names),
            ),
        },
        parity=parity,
        text_truncation=True,
    )
    (out / BUNDLE_FILE).write_text(manifest.model_dump_json(indent=2))
    steps.update()
    steps.close()
    failed = {k: v for k, v in parity.items() if not v.passed}
    if failed:
        raise ExportParityError(
            f"ONNX export of {spec.id} differs from torch above {tolerance}: "
            + ", ".join(f"{k} max|diff|={v.max_abs_diff:.2e}" for k, v in failed.items())
            + f" (report in {out / BUNDLE_FILE})"
        )
    return manifest


def _export(
    module: torch.nn.Module,
    args: tuple,
    path: Path,
    *,
    batch_inputs: tuple[str, ...],
    seq_inputs: dict[str, int] | None = None,
) -> None:
    """Dim 0 of every input is the batch; `seq_inputs` also get a dynamic dim 1 up to a max."""
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    shapes: dict[str, dict] = {name: {0: batch} for name in batch_inputs}
    for name, longest in (seq_inputs or {}).items():
        shapes[name][1] = torch.export.Dim("seq", min=2, max=longest)
    # torch.onnx narrates every pass on stdout and warns about internals; the progress bar and
    # the parity report are what users need to see.
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=list(batch_inputs),
            output_names=list(module.output_names),
            dynamic_shapes=shapes,
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def _parity(
    module, path: Path, args: tuple, names: tuple[str, ...], tolerance: float
) -> ParityResult:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: a.numpy() for n, a in zip(names, args, strict=True)})[0]
    with torch.no_grad():
        want = module(*args).numpy()
    diff = float(np.abs(got - want).max())
    cos = (got * want).sum(-1) / (np.linalg.norm(got, axis=-1) * np.linalg.norm(want, axis=-1))
    return ParityResult(
        max_abs_diff=diff,
        min_cosine=float(cos.min()),
        tolerance=tolerance,
        batch=len(got),
        passed=diff <= tolerance,
    )


def _square(size: int | tuple[int, int] | list[int]) -> int:
    """open_clip sizes are an int or an (H, W) pair; promptserve serves square inputs."""
    return int(size if isinstance(size, int) else size[0])


def _image_size(model) -> int:
    return _square(model.visual.image_size)


def _preprocess_cfg(model) -> PreprocessConfig:
    from open_clip.model import get_model_preprocess_cfg

    cfg = get_model_preprocess_cfg(model)
    return PreprocessConfig(
        size=_square(cfg.get("size", model.visual.image_size)),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        interpolation=cfg.get("interpolation", "bicubic"),
        resize_mode=cfg.get("resize_mode", "shortest"),
    )
