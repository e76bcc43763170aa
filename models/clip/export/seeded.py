"""Backbones with seeded random weights, written to a local file and loaded through the same
path as real weights. They drive the demo, the tests and the benchmarks where no pretrained
weights can be downloaded; every figure they produce comes from random weights.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from promptserve.models.clip.backbone import BUILTIN_CONFIG_DIR, BackboneSpec

DEMO_ARCH = "promptserve-tiny-vit"


def default_cache_dir() -> Path:
    return Path(os.environ.get("PROMPTSERVE_CACHE", Path.home() / ".cache" / "promptserve"))


def seeded_backbone(
    arch: str = DEMO_ARCH, *, seed: int = 0, directory: str | Path | None = None
) -> BackboneSpec:
    """A `NAME@FILE` spec whose weights file holds `arch` initialised with `seed` (written once).

    `arch` is an open_clip model name, a built-in promptserve config, or a config JSON path.
    """
    import torch
    from safetensors.torch import save_file

    is_json = arch.endswith(".json")
    stem = Path(arch).stem if is_json else arch
    config = Path(arch) if is_json else BUILTIN_CONFIG_DIR / f"{arch}.json"
    if config.exists():  # a changed config must not load stale weights
        stem += "-" + hashlib.sha256(config.read_bytes()).hexdigest()[:8]
    path = Path(directory or default_cache_dir() / "backbones") / f"{stem}-seed{seed}.safetensors"
    spec = BackboneSpec(**{"config" if is_json else "model": arch, "weights": str(path)})
    if not path.exists():
        import open_clip

        from promptserve.models.clip.backbone import _quiet_open_clip, _register_config

        _register_config(spec)
        torch.manual_seed(seed)
        with _quiet_open_clip():
            model = open_clip.create_model(spec.arch, pretrained=None, load_weights=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
        tmp.replace(path)
    return spec
