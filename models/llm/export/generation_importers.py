"""`promptserve import peft | dro | idp | hard-prompt`: generation prompts from the field's files.

Every importer reads files without executing them (safetensors parsed here; a legacy PEFT
`adapter_model.bin` through the restricted unpickler, exporters/checkpoints.py), keeps the
tensors in float32 (exact for float16/bfloat16 files) and validates the artifact with
`validate_generation` when the backbone's sizes are known (a local model folder, or `demo`);
otherwise the server validates at registration. The formats and where each prompt goes are
documented in docs/prompt-formats.md.

- PEFT prompt tuning (huggingface/peft 0.21.2): `adapter_config.json` + `adapter_model.
  safetensors` holding `prompt_embeddings [num_virtual_tokens, token_dim]`, the tensor
  `tuners/tuners_utils.py::BasePromptEncoder._get_adapter_state_dict` saves
  (`peft_model.py::PeftModel.get_prompt_embedding_to_save`), which
  `peft_model.py::PeftModelForCausalLM.forward` concatenates before all input embeddings
  (BOS included): placement `prefix`.
- DRO (chujiezheng/LLM-Safeguard `code/train.py::main`): `save_file({'soft_prompt': [L, d]})`,
  trained in the system turn (`code/train.py::embed_soft_prompt`) and served there
  (`code/generate.py::prepend_sys_prompt`): placement `system`.
- IDP pools: our format (pool of m soft prompts, models/llm/generate/artifacts.py).
- Hard prompts: text, or JSON from DSPy / OPRO / APE or a plain `{"prompt": ...}`.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from promptserve.models.artifacts import (
    MANIFEST_FILE,
    ArtifactError,
    ArtifactManifest,
    PromptArtifact,
    first_validation_error,
)
from promptserve.models.llm.generate.artifacts import (
    HardPromptManifest,
    PoolManifest,
    SoftPromptManifest,
    soft_prompt,
    validate_generation,
)

__all__ = [
    "GENERATION_COMMANDS",
    "BackboneInfo",
    "import_dro",
    "import_hard_prompt",
    "import_idp",
    "import_peft",
    "pool_inputs_in",
    "read_hard_prompt",
    "read_peft_adapter",
    "read_safetensors",
    "resolve_backbone",
]

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_SAFETENSORS = "adapter_model.safetensors"
ADAPTER_BIN = "adapter_model.bin"
PEFT_KEY = "prompt_embeddings"
DRO_KEY = "soft_prompt"
# PEFT types whose saved `prompt_embeddings` are the input embeddings PeftModelForCausalLM
# prepends (P-tuning saves its encoder's *output*: get_prompt_embedding_to_save).
PEFT_EMBEDDING_TYPES = ("PROMPT_TUNING", "P_TUNING")
PEFT_REFUSALS = {
    "PREFIX_TUNING": "prefix tuning saves per-layer past_key_values (keys and values of every "
    "layer), not input embeddings; promptserve serves input-embedding soft prompts only",
    "CARTRIDGE": "cartridges are per-layer past_key_values (a KV-cache prefix), not input "
    "embeddings; promptserve serves input-embedding soft prompts only",
    "MULTITASK_PROMPT_TUNING": "multitask prompt tuning builds each task's prompt from shared "
    "embeddings and task-specific factors; export one task's prompt with "
    "get_prompt_embedding_to_save and import it as a prompt-tuning adapter",
    "CPT": "context-aware prompt tuning (CPT) is not supported",
    "ADAPTION_PROMPT": "adaption prompts (LLaMA-Adapter) are gated per-layer prompts, not input "
    "embeddings",
}
HARD_PROMPT_KEYS = ("prompt", "instruction", "system_prompt")
OPRO_KEY = "old_instructions_and_scores"  # google-deepmind/opro opt_utils.py::run_evolution
APE_PROMPT = re.compile(r"^Prompt: ", re.MULTILINE)  # keirp/automatic_prompt_engineer
_SAFETENSORS_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64}
_MAX_HEADER = 100 * 1024 * 1024


# -- backbone ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BackboneInfo:
    """The id an artifact is matched against, and the sizes when a local folder gives them."""

    id: str
    hidden_size: int | None = None
    num_layers: int | None = None
    num_heads: int | None = None

    def validate(self, artifact: PromptArtifact) -> PromptArtifact:
        """validate_generation where the sizes are known (hard prompts need none)."""
        if isinstance(artifact.manifest, HardPromptManifest):
            validate_generation(artifact, 0, 0, 0)
        elif self.hidden_size is not None:
            validate_generation(
                artifact, self.hidden_size, self.num_layers or 0, self.num_heads or 0
            )
        return artifact


def resolve_backbone(backbone: str) -> BackboneInfo:
    """`demo`, `local-dir:PATH` or a model folder (id and sizes from its config.json),
    `hf-hub:ORG/NAME[@REV]` (its id), or any other string: the id itself (a server's
    backbone_id)."""
    from promptserve.models.llm.backbone import LOCAL_DIR, LlmBackboneSpec

    text = backbone.strip()
    if text == "demo":
        from promptserve.models.llm.export.seeded import demo_llm_dir

        text = f"{LOCAL_DIR}{demo_llm_dir()}"
    elif not text.startswith(("hf-hub:", LOCAL_DIR)) and (Path(text) / "config.json").is_file():
        text = f"{LOCAL_DIR}{text}"
    if not text.startswith(("hf-hub:", LOCAL_DIR)):
        if not text:
            raise ArtifactError("--backbone is empty")
        return BackboneInfo(id=text)
    spec = LlmBackboneSpec.parse(text)
    if spec.source != "local-dir":
        return BackboneInfo(id=spec.id)
    config = json.loads((spec.path / "config.json").read_text())
    config = config.get("text_config") or config  # multimodal folders nest the LM's sizes
    return BackboneInfo(
        id=spec.id,
        hidden_size=config.get("hidden_size"),
        num_layers=config.get("num_hidden_layers"),
        num_heads=config.get("num_attention_heads"),
    )


# -- reading tensors -----------------------------------------------------------------------------
def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as float32, bfloat16 included (numpy has no bfloat16,
    so `safetensors.numpy` refuses it; a bfloat16 is the top half of a float32)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) < 8:
        raise ArtifactError(f"{path}: not a safetensors file (too short)")
    (size,) = struct.unpack("<Q", data[:8])
    if size > min(_MAX_HEADER, len(data) - 8):
        raise ArtifactError(f"{path}: not a safetensors file (bad header length)")
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ArtifactError(f"{path}: not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise ArtifactError(f"{path}: not a safetensors file (header is not an object)")
    body = memoryview(data)[8 + size :]
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = info["dtype"], info["shape"], info["data_offsets"]
            if not 0 <= start <= end <= len(body):
                raise ValueError("data offsets past the end of the file")
            out[name] = _decode(body[start:end], dtype, [int(s) for s in shape])
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{path}: tensor {name!r} is malformed ({exc})") from None
    return out


def _decode(raw: memoryview, dtype: str, shape: list[int]) -> np.ndarray:
    if dtype != "BF16" and dtype not in _SAFETENSORS_DTYPES:
        raise ValueError(f"dtype {dtype} is not a floating point type this importer reads")
    itemsize = 2 if dtype == "BF16" else np.dtype(_SAFETENSORS_DTYPES[dtype]).itemsize
    count = math.prod(shape)
    if any(s < 0 for s in shape) or len(raw) != count * itemsize:
        raise ValueError(f"data offsets do not hold {shape} {dtype} values")
    if dtype == "BF16":
        half = np.frombuffer(raw, dtype="<u2", count=count)
        return (half.astype(np.uint32) << 16).view(np.float32).reshape(shape)
    array = np.frombuffer(raw, dtype=np.dtype(_SAFETENSORS_DTYPES[dtype]).newbyteorder("<"))
    return array.reshape(shape).astype(np.float32)


def _matrix(tensor: np.ndarray, what: str) -> np.ndarray:
    if tensor.ndim != 2 or 0 in tensor.shape:
        raise ArtifactError(f"{what} has shape {list(tensor.shape)}; expected [tokens, width]")
    return np.ascontiguousarray(tensor, dtype=np.float32)


# -- PEFT ----------------------------------------------------------------------------------------
def read_peft_adapter(adapter_dir: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The prompt embeddings [n, d] of a PEFT prompt-tuning (or P-tuning) adapter folder and
    its config; ArtifactError for any adapter whose saved tensor is not input embeddings."""
    folder = Path(adapter_dir)
    config_path = folder / ADAPTER_CONFIG
    if not config_path.is_file():
        raise ArtifactError(f"{folder}: not a PEFT adapter folder (no {ADAPTER_CONFIG})")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{config_path}: not JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ArtifactError(f"{config_path}: expected a JSON object")
    peft_type = str(config.get("peft_type"))
    if peft_type in PEFT_REFUSALS:
        raise ArtifactError(f"{folder}: a {peft_type} adapter: {PEFT_REFUSALS[peft_type]}")
    if peft_type not in PEFT_EMBEDDING_TYPES:
        raise ArtifactError(
            f"{folder}: a {peft_type} adapter changes the model's weights, not its input: only "
            f"{' and '.join(PEFT_EMBEDDING_TYPES)} adapters are soft prompts (merge a weight "
            "adapter into the backbone with merge_and_unload() and export that model instead)"
        )
    task = config.get("task_type")
    if task not in (None, "CAUSAL_LM"):
        raise ArtifactError(f"{folder}: task_type {task!r}: only CAUSAL_LM adapters generate")
    submodules = config.get("num_transformer_submodules") or 1
    if submodules != 1:
        raise ArtifactError(
            f"{folder}: num_transformer_submodules is {submodules}: the adapter holds one prompt "
            "per encoder/decoder stack (sequence-to-sequence); a causal LM takes one"
        )
    tensors = _adapter_tensors(folder)
    if PEFT_KEY not in tensors:
        raise ArtifactError(
            f"{folder}: the adapter holds no {PEFT_KEY!r} tensor (keys: {sorted(tensors)[:8]})"
        )
    value = tensors[PEFT_KEY]
    if not isinstance(value, np.ndarray):
        raise ArtifactError(f"{folder}: {PEFT_KEY!r} is a {type(value).__name__}, not a tensor")
    embeddings = _matrix(value, f"{folder}: {PEFT_KEY}")
    tokens, dim = config.get("num_virtual_tokens"), config.get("token_dim")
    if tokens is not None and embeddings.shape[0] != tokens * submodules:
        raise ArtifactError(
            f"{folder}: {PEFT_KEY} has {embeddings.shape[0]} rows but the config says "
            f"num_virtual_tokens={tokens}"
        )
    if dim is not None and embeddings.shape[1] != dim:
        raise ArtifactError(
            f"{folder}: {PEFT_KEY} is {embeddings.shape[1]} wide but the config says "
            f"token_dim={dim}: the files do not belong together"
        )
    return embeddings, config


def _adapter_tensors(folder: Path) -> dict[str, Any]:
    if (folder / ADAPTER_SAFETENSORS).is_file():
        return dict(read_safetensors(folder / ADAPTER_SAFETENSORS))
    if not (folder / ADAPTER_BIN).is_file():
        raise ArtifactError(f"{folder}: no {ADAPTER_SAFETENSORS} or {ADAPTER_BIN}")
    import torch

    from promptserve.exporters.checkpoints import CheckpointError, load_checkpoint

    try:
        checkpoint = load_checkpoint(folder / ADAPTER_BIN)
    except CheckpointError as exc:
        raise ArtifactError(str(exc)) from None
    out: dict[str, Any] = {}
    for key, value in checkpoint.items():
        out[key] = value.detach().float().numpy() if isinstance(value, torch.Tensor) else value
    return out


def import_peft(adapter_dir: str | Path, backbone: str | None = None) -> PromptArtifact:
    """A `soft-prompt` artifact (placement prefix) from a PEFT prompt-tuning adapter folder;
    the backbone defaults to the adapter's `base_model_name_or_path`."""
    embeddings, config = read_peft_adapter(adapter_dir)
    base = backbone or config.get("base_model_name_or_path")
    if not base:
        raise ArtifactError(
            f"{adapter_dir}: the adapter names no base model; pass --backbone (the backbone id)"
        )
    info = resolve_backbone(str(base))
    hparams = {"peft_type": config["peft_type"]}
    manifest = _manifest(
        SoftPromptManifest,
        backbone=info.id,
        num_tokens=embeddings.shape[0],
        placement="prefix",
        source=f"peft:{Path(adapter_dir).resolve().name}",
        hparams=hparams,
    )
    return info.validate(PromptArtifact(manifest, {"prompt_embeddings": embeddings}))


# -- DRO -----------------------------------------------------------------------------------------
def import_dro(path: str | Path, backbone: str) -> PromptArtifact:
    """A `soft-prompt` artifact (placement system) from a DRO `soft_prompt [L, d]` file."""
    tensors = read_safetensors(path)
    if DRO_KEY not in tensors:
        raise ArtifactError(
            f"{path}: no {DRO_KEY!r} tensor (keys: {sorted(tensors)[:8]}); DRO saves "
            "save_file({'soft_prompt': [L, d]}) (chujiezheng/LLM-Safeguard code/train.py)"
        )
    embeddings = _matrix(tensors[DRO_KEY], f"{path}: {DRO_KEY}")
    info = resolve_backbone(backbone)
    manifest = _manifest(
        SoftPromptManifest,
        backbone=info.id,
        num_tokens=embeddings.shape[0],
        placement="system",
        source=f"dro:{Path(path).name}",
    )
    return info.validate(PromptArtifact(manifest, {"prompt_embeddings": embeddings}))


# -- IDP pools -----------------------------------------------------------------------------------
def pool_inputs_in(directory: str | Path) -> list[Path]:
    """The pool members of a folder, in natural name order (p2 before p10): safetensors files,
    PEFT adapter folders and soft-prompt artifact folders."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: no such folder")
    found = [
        p
        for p in folder.iterdir()
        if (p.is_file() and p.suffix == ".safetensors")
        or (p.is_dir() and ((p / ADAPTER_CONFIG).is_file() or (p / MANIFEST_FILE).is_file()))
    ]
    if not found:
        raise ArtifactError(
            f"{folder}: no prompts (*.safetensors files, PEFT adapter folders or soft-prompt "
            "artifact folders)"
        )
    return sorted(found, key=_natural_key)


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _pool_member(path: Path) -> np.ndarray:
    if path.is_dir() and (path / ADAPTER_CONFIG).is_file():
        return read_peft_adapter(path)[0]
    if path.is_dir() and (path / MANIFEST_FILE).is_file():
        artifact = PromptArtifact.load(path)
        manifest = artifact.manifest
        if not isinstance(manifest, SoftPromptManifest) or manifest.placement != "prefix":
            raise ArtifactError(
                f"{path}: a pool member must be a soft prompt placed as a prefix; this is a "
                f"{manifest.method} artifact"
                + (
                    f" placed in the {manifest.placement}"
                    if isinstance(manifest, SoftPromptManifest)
                    else ""
                )
            )
        return _matrix(soft_prompt(artifact), str(path))
    if path.is_file():
        tensors = read_safetensors(path)
        if len(tensors) != 1:
            raise ArtifactError(
                f"{path}: a pool member file holds exactly one tensor [tokens, width]; it "
                f"holds {sorted(tensors)[:8]}"
            )
        return _matrix(next(iter(tensors.values())), str(path))
    raise ArtifactError(f"{path}: no such file or prompt folder")


def import_idp(
    prompts: Sequence[str | Path],
    backbone: str,
    *,
    layer: int | None = None,
    heads: Sequence[int] | None = None,
) -> PromptArtifact:
    """An `idp` pool of the given soft prompts, in order (prompt i is `prompt.{i}`)."""
    paths = [Path(p) for p in prompts]
    if len(paths) < 2:
        raise ArtifactError(f"an IDP pool needs at least 2 prompts; got {len(paths)}")
    members = [_pool_member(p) for p in paths]
    widths = {m.shape[1] for m in members}
    if len(widths) != 1:
        shown = ", ".join(f"{p.name}: {m.shape[1]}" for p, m in zip(paths, members, strict=True))
        raise ArtifactError(f"the pool's prompts differ in width ({shown})")
    if layer is not None and layer < 0:
        raise ArtifactError(f"--layer {layer}: layers count from 0")
    if heads is not None and any(h < 0 for h in heads):
        raise ArtifactError(f"--heads {list(heads)}: heads count from 0")
    info = resolve_backbone(backbone)
    manifest = _manifest(
        PoolManifest,
        backbone=info.id,
        token_counts=[m.shape[0] for m in members],
        layer=layer,
        heads=list(heads) if heads is not None else None,
        source="idp pool",
        hparams={"prompt_names": [p.name for p in paths]},
    )
    tensors = {f"prompt.{i}": m for i, m in enumerate(members)}
    return info.validate(PromptArtifact(manifest, tensors))


# -- hard prompts --------------------------------------------------------------------------------
def read_hard_prompt(path: str | Path, predictor: str | None = None) -> tuple[str, dict[str, Any]]:
    """(text, what it was) of a prompt file: plain text (APE's result file recognised), or
    JSON (`{"prompt"|"instruction"|"system_prompt": ...}`, scored candidates -> the best,
    OPRO's `old_instructions_and_scores`, a saved DSPy program's instructions)."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ArtifactError(f"{path}: not UTF-8 text") from None
    if path.suffix.lower() != ".json":
        match = APE_PROMPT.search(raw)
        if match and raw.startswith("Test score: "):
            # experiments/run_instruction_induction.py::run writes "Test score: ..\nPrompt: .."
            return raw[match.end() :].strip(), {"format": "ape"}
        return raw.strip(), {"format": "text"}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not JSON ({exc})") from None
    return _from_json(data, predictor, path)


def _from_json(data: Any, predictor: str | None, path: Path) -> tuple[str, dict[str, Any]]:
    if isinstance(data, list):
        return _best(data, path, "candidates")
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: expected a JSON object or list, got {type(data).__name__}")
    if OPRO_KEY in data:
        return _best(data[OPRO_KEY], path, "opro")
    for key in HARD_PROMPT_KEYS:
        if key in data:
            return _text(data[key], f"{path}: {key!r}"), {"format": key}
    programs = _dspy_instructions(data)
    if programs:
        if predictor is not None:
            if predictor not in programs:
                raise ArtifactError(
                    f"{path}: no predictor {predictor!r} (the program has {sorted(programs)})"
                )
            return programs[predictor], {"format": "dspy", "predictor": predictor}
        if len(set(programs.values())) > 1:
            raise ArtifactError(
                f"{path}: the DSPy program has {len(programs)} predictors with different "
                f"instructions ({sorted(programs)}); choose one with --predictor"
            )
        name = sorted(programs)[0]
        return programs[name], {"format": "dspy", "predictor": name}
    raise ArtifactError(
        f"{path}: no prompt found: expected {{'prompt'|'instruction'|'system_prompt': TEXT}}, "
        "[{'prompt': TEXT, 'score': N}, ...], OPRO's {'old_instructions_and_scores': [[TEXT, "
        "SCORE, STEP], ...]} or a DSPy program saved with save('program.json')"
    )


def _dspy_instructions(data: dict[str, Any]) -> dict[str, str]:
    """Predictor name -> instructions of a DSPy `Module.save(path.json)` file:
    `signature.instructions` (stanfordnlp/dspy predict/predict.py::Predict.dump_state,
    signatures/signature.py::dump_state) or the older `signature_instructions`."""
    out = {}
    for name, state in data.items():
        if name == "metadata" or not isinstance(state, dict):
            continue
        signature = state.get("signature")
        text = signature.get("instructions") if isinstance(signature, dict) else None
        text = text if text is not None else state.get("signature_instructions")
        if isinstance(text, str) and text.strip():
            out[name] = text.strip()
    return out


def _best(candidates: Any, path: Path, fmt: str) -> tuple[str, dict[str, Any]]:
    """The highest-scoring candidate (the first of equals): dicts with a text key and `score`,
    or OPRO's (instruction, score, step) triples."""
    if not isinstance(candidates, list) or not candidates:
        raise ArtifactError(f"{path}: expected a non-empty list of scored prompts")
    scored: list[tuple[str, float]] = []
    for i, item in enumerate(candidates):
        where = f"{path}: candidate {i}"
        if isinstance(item, dict):
            key = next((k for k in HARD_PROMPT_KEYS if k in item), None)
            if key is None:
                raise ArtifactError(f"{where} has none of the keys {list(HARD_PROMPT_KEYS)}")
            text, score = _text(item[key], where), item.get("score")
        elif isinstance(item, list) and len(item) >= 2:
            text, score = _text(item[0], where), item[1]
        else:
            raise ArtifactError(f"{where}: expected {{'prompt': TEXT, 'score': N}} or [TEXT, N]")
        if score is None and len(candidates) == 1:
            score = 0.0
        if (
            isinstance(score, bool)
            or not isinstance(score, int | float)
            or not math.isfinite(score)
        ):
            raise ArtifactError(f"{where} has no finite numeric score ({score!r})")
        scored.append((text, float(score)))
    best = max(range(len(scored)), key=lambda i: scored[i][1])
    return scored[best][0], {"format": fmt, "score": scored[best][1], "candidates": len(scored)}


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ArtifactError(f"{where} is not a non-empty string")
    return value.strip()


def import_hard_prompt(
    path: str | Path, backbone: str, *, role: str = "system", predictor: str | None = None
) -> PromptArtifact:
    """A `hard-prompt` artifact from a text or JSON file (read_hard_prompt)."""
    text, what = read_hard_prompt(path, predictor)
    if not text:
        raise ArtifactError(f"{path}: the prompt is empty")
    manifest = _manifest(
        HardPromptManifest,
        backbone=resolve_backbone(backbone).id,
        text=text,
        role=role,
        source=f"{what['format']}:{Path(path).name}",
        hparams=what,
    )
    return BackboneInfo(id=manifest.backbone).validate(PromptArtifact(manifest))


def _manifest(cls: type[ArtifactManifest], **fields: Any) -> Any:
    try:
        return cls(**fields)
    except ValidationError as exc:
        where, msg = first_validation_error(exc, default="manifest")
        raise ArtifactError(f"invalid {cls.__name__} {where}: {msg}") from None


# -- CLI commands (models/llm/export/commands.py::COMMANDS) --------------------------------------
BACKBONE_HELP = (
    "the backbone it runs on: the server's backbone id, hf-hub:ORG/NAME, local-dir:PATH or a "
    "model folder (then the prompt's width is checked here), or `demo` (the tiny seeded LLM)"
)


class PeftCommand:
    help = "a PEFT prompt-tuning adapter folder (soft prompt before the input, BOS included)"

    @staticmethod
    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("adapter_dir", type=Path, help="the folder save_pretrained wrote")
        parser.add_argument(
            "--backbone", help=BACKBONE_HELP + " (default: the adapter's base model)"
        )

    @staticmethod
    def run(args: argparse.Namespace) -> PromptArtifact:
        return import_peft(args.adapter_dir, args.backbone)


class DroCommand:
    help = "a DRO safety soft prompt (soft_prompt [L, d]; served in the system turn)"

    @staticmethod
    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("file", type=Path, help="the .safetensors file DRO's train.py wrote")
        parser.add_argument("--backbone", required=True, help=BACKBONE_HELP)

    @staticmethod
    def run(args: argparse.Namespace) -> PromptArtifact:
        return import_dro(args.file, args.backbone)


class IdpCommand:
    help = "an IDP prompt pool (m soft prompts; each input chooses one)"

    @staticmethod
    def arguments(parser: argparse.ArgumentParser) -> None:
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument(
            "--prompts",
            nargs="+",
            type=Path,
            help="the pool, in order: safetensors files holding one tensor [n_i, d] each, PEFT "
            "adapter folders or soft-prompt artifact folders",
        )
        group.add_argument("--dir", type=Path, help="a folder of such prompts (natural name order)")
        parser.add_argument(
            "--layer", type=int, help="the decoder layer whose attention selects (default last)"
        )
        parser.add_argument(
            "--heads",
            type=_int_list,
            help="comma-separated heads averaged at that layer (default: all)",
        )
        parser.add_argument("--backbone", required=True, help=BACKBONE_HELP)

    @staticmethod
    def run(args: argparse.Namespace) -> PromptArtifact:
        prompts = args.prompts if args.prompts is not None else pool_inputs_in(args.dir)
        return import_idp(prompts, args.backbone, layer=args.layer, heads=args.heads)


class HardPromptCommand:
    help = "a hard prompt: text, or JSON from a prompt optimiser (DSPy, OPRO, APE)"

    @staticmethod
    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("file", type=Path, help="a text file, or a .json file")
        parser.add_argument("--backbone", required=True, help=BACKBONE_HELP)
        parser.add_argument(
            "--role",
            choices=("system", "prefix"),
            default="system",
            help="system: the chat's system message; prefix: text before the prompt",
        )
        parser.add_argument(
            "--predictor", help="the predictor of a DSPy program with several (its JSON key)"
        )

    @staticmethod
    def run(args: argparse.Namespace) -> PromptArtifact:
        return import_hard_prompt(
            args.file, args.backbone, role=args.role, predictor=args.predictor
        )


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers like 0,1,3") from None


GENERATION_COMMANDS: dict[str, Any] = {
    "peft": PeftCommand(),
    "dro": DroCommand(),
    "idp": IdpCommand(),
    "hard-prompt": HardPromptCommand(),
}
