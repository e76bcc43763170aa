"""Registering the artifacts a config lists under `prompts.preload` when a gateway starts."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from promptserve.models.artifacts import MANIFEST_FILE, TENSORS_FILE
from promptserve.serving.errors import ServeError

log = logging.getLogger("promptserve.gateway")
Register = Callable[[dict[str, Any], bytes | None, str | None], Awaitable[Any]]


async def preload(urls: list[str], register: Register) -> None:
    """Register every artifact directory at or directly under each URL (a directory or an
    fsspec URL), under its directory's name. An artifact the server refuses (another
    backbone, an invalid manifest) is logged and skipped; a storage failure raises, so the
    caller can retry and say it is not ready."""
    import fsspec

    for url in urls:
        fs, root = fsspec.core.url_to_fs(url)
        dirs = (
            [root]
            if fs.exists(f"{root}/{MANIFEST_FILE}")
            else sorted(d for d in fs.ls(root, detail=False) if fs.exists(f"{d}/{MANIFEST_FILE}"))
        )
        for directory in dirs:
            name = directory.rstrip("/").rsplit("/", 1)[-1]
            manifest = json.loads(fs.cat(f"{directory}/{MANIFEST_FILE}").decode())
            path = f"{directory}/{TENSORS_FILE}"
            tensors = fs.cat(path) if fs.exists(path) else None
            try:
                info = await register(manifest, tensors, name)
            except ServeError as exc:
                log.error("skipping artifact %s: %s", directory, exc.message)
                continue
            log.info("preloaded prompt %s (%s)", info.prompt_id, info.content_id[:12])
