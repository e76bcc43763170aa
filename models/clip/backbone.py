"""Backbone specs: which open_clip architecture, with which weights.

Architecture and weights are separate keys, as in open_clip: the architecture is an open_clip
model name or a custom model-config JSON (open_clip's own format); the weights are a pretrained
tag (downloaded by open_clip, for users with a network) or a local file (safetensors, a state
dict, or an OpenAI-format CLIP state dict). Parsing needs no torch; loading does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    import torch

BUILTIN_CONFIG_DIR = Path(__file__).parent / "model_configs"
# open_clip's source schemas and the files a local-dir / hf-hub folder holds
HF_HUB, LOCAL_DIR = "hf-hub:", "local-dir:"
SCHEMAS = (HF_HUB, LOCAL_DIR)
SCHEMA_CONFIG = "open_clip_config.json"
SCHEMA_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
# Keys an OpenAI CLIP state dict carries that are not parameters of open_clip's CLIP.
_OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")


class BackboneError(ValueError):
    """A backbone spec that cannot be resolved or loaded."""


class BackboneSpec(BaseModel):
    """Where a frozen CLIP backbone comes from.

    Example:
        >>> BackboneSpec.parse("ViT-B-32:laion2b_s34b_b79k")        # open_clip pretrained tag
        >>> BackboneSpec.parse("ViT-B-16@/models/clip_vit_b16.pt")   # name + local weights
        >>> BackboneSpec.parse("/cfg/my-vit.json@/models/my-vit.safetensors")
        >>> BackboneSpec.parse("hf-hub:timm/ViT-B-16-SigLIP")        # open_clip's schemas:
        >>> BackboneSpec.parse("local-dir:/models/my-clip")          # config + weights folder
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str | None = Field(None, description="open_clip architecture name, e.g. ViT-B-32.")
    config: str | None = Field(None, description="Path to an open_clip model-config JSON.")
    pretrained: str | None = Field(None, description="open_clip pretrained tag, e.g. openai.")
    weights: str | None = Field(None, description="Path to a local weights file.")
    source: str | None = Field(
        None,
        description="`hf-hub:ORG/REPO` or `local-dir:PATH`, open_clip's schemas: a folder "
        "holding open_clip_config.json and the weights, on the Hugging Face Hub or on disk.",
    )

    @model_validator(mode="after")
    def _check(self) -> BackboneSpec:
        if self.source is not None:
            if not self.source.startswith(SCHEMAS) or self.source.endswith(SCHEMAS):
                raise ValueError(
                    f"`source` must be hf-hub:ORG/REPO or local-dir:PATH, not {self.source!r}"
                )
            if any(v is not None for v in (self.model, self.config, self.pretrained, self.weights)):
                raise ValueError("a `source` folder names architecture and weights together")
            return self
        if (self.model is None) == (self.config is None):
            raise ValueError("give exactly one of `model` (an open_clip name) or `config` (a JSON)")
        if (self.pretrained is None) == (self.weights is None):
            raise ValueError("give exactly one of `pretrained` (a tag) or `weights` (a file)")
        if self.config is not None and self.pretrained is not None:
            raise ValueError(
                "a custom `config` needs local `weights`; pretrained tags are per name"
            )
        return self

    @classmethod
    def parse(cls, text: str) -> BackboneSpec:
        """Parse `NAME:TAG`, `NAME@WEIGHTS`, `CONFIG.json@WEIGHTS`, `hf-hub:ORG/REPO` or
        `local-dir:PATH` (schemas first, as open_clip's `parse_model_name` does)."""
        if text.startswith(SCHEMAS):
            return cls(source=text)
        if "@" in text:
            arch, weights = text.split("@", 1)
            key = "config" if arch.endswith(".json") else "model"
            return cls(**{key: arch, "weights": weights})
        if ":" in text:
            name, tag = text.split(":", 1)
            return cls(model=name, pretrained=tag)
        raise BackboneError(
            f"cannot parse backbone {text!r}: use NAME:TAG (e.g. ViT-B-32:openai), NAME@WEIGHTS, "
            "CONFIG.json@WEIGHTS, hf-hub:ORG/REPO or local-dir:PATH"
        )

    @property
    def arch(self) -> str:
        """Architecture name (the config file's stem for custom configs, the repository or
        folder name for schemas)."""
        if self.source is not None:
            return self.source.split(":", 1)[1].rstrip("/").rsplit("/", 1)[-1]
        return self.model if self.model is not None else Path(self.config or "").stem

    @cached_property
    def id(self) -> str:
        """Stable identity used to match artifacts and bundles to a backbone: a hub repository
        by name, local weights by their content."""
        if self.source is not None and self.source.startswith(HF_HUB):
            return self.source
        if self.source is not None:
            return f"{self.arch}@{file_sha256(_local_weights(self._local_dir))[:16]}"
        if self.pretrained is not None:
            return f"{self.arch}:{self.pretrained}"
        return f"{self.arch}@{file_sha256(self.weights or '')[:16]}"

    def model_cfg(self) -> dict[str, Any]:
        """The open_clip model config (embed_dim, vision_cfg, text_cfg, ...)."""
        if self.source is not None and self.source.startswith(LOCAL_DIR):
            return dict(_read_json(self._local_dir / SCHEMA_CONFIG)["model_cfg"])
        if self.source is not None:
            from open_clip.factory import _get_hf_config

            return dict(_get_hf_config(self.source.removeprefix(HF_HUB))["model_cfg"])
        if self.config is not None:
            return _read_json(Path(self.config))
        builtin = BUILTIN_CONFIG_DIR / f"{self.arch}.json"
        if builtin.exists():
            return _read_json(builtin)
        from open_clip import get_model_config

        cfg = get_model_config(self.arch)
        if cfg is None:
            raise BackboneError(
                f"unknown open_clip model {self.arch!r}; see open_clip.list_models()"
            )
        return cfg

    @property
    def _local_dir(self) -> Path:
        return Path((self.source or "").removeprefix(LOCAL_DIR))

    def text_width(self) -> int:
        return int(self.model_cfg()["text_cfg"]["width"])

    def load(self) -> torch.nn.Module:
        """Build the open_clip CLIP model in eval mode, fp32, on CPU."""
        import open_clip

        if self.source is not None and self.source.startswith(HF_HUB):
            model = open_clip.create_model(self.source)  # open_clip reads weights_only
        elif self.source is not None:  # open_clip builds the folder's architecture; our
            # own reader (safetensors, or torch.load weights_only) loads its weights
            with _quiet_open_clip():
                model = open_clip.create_model(self.source, load_weights=False)
            model.load_state_dict(read_state_dict(_local_weights(self._local_dir)), strict=True)
        elif self.pretrained is not None:
            model = open_clip.create_model(self.arch, pretrained=self.pretrained)
        else:
            _register_config(self)
            with _quiet_open_clip():  # it warns "initialized randomly"; weights load next
                model = open_clip.create_model(self.arch, pretrained=None, load_weights=False)
            model.load_state_dict(read_state_dict(self.weights or ""), strict=True)
        if not hasattr(model, "token_embedding"):
            raise BackboneError(
                f"{self.arch} has a custom (HF) text tower; promptserve needs CLIP's own text "
                "transformer to feed learned context embeddings"
            )
        return model.eval()


def _register_config(spec: BackboneSpec) -> None:
    """Make a custom or built-in config JSON known to open_clip (it registers by file stem)."""
    import open_clip

    path = Path(spec.config) if spec.config else BUILTIN_CONFIG_DIR / f"{spec.arch}.json"
    if spec.config is not None and not path.exists():
        raise BackboneError(f"model config {path} does not exist")
    if path.exists() and spec.arch not in open_clip.list_models():
        open_clip.add_model_config(path)


@contextlib.contextmanager
def _quiet_open_clip():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read CLIP weights without executing the file: safetensors, or torch.load(weights_only).

    Accepts open_clip checkpoints (`state_dict` key, DataParallel `module.` prefix) and OpenAI
    CLIP state dicts, whose parameter names match open_clip's CLIP.
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise BackboneError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd: Any = load_file(str(path))
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise BackboneError(
                f"cannot read {path} as a state dict ({exc}); TorchScript archives such as "
                "OpenAI's original .pt files are not read: save their state_dict() first"
            ) from exc
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise BackboneError(f"{path} holds {type(sd).__name__}, not a state dict")
    sd = {k.removeprefix("module."): v for k, v in sd.items() if k not in _OPENAI_EXTRA_KEYS}
    return {k: v.float() for k, v in sd.items()}


def _local_weights(folder: Path) -> Path:
    """The weights file of an open_clip local-dir folder (safetensors preferred)."""
    for name in SCHEMA_WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    raise BackboneError(
        f"{folder} holds none of {list(SCHEMA_WEIGHTS)} (open_clip's local-dir layout)"
    )


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BackboneError(f"cannot read model config {path}: {exc}") from exc
