"""Prompt methods by name. Adding a method is one module and one entry here."""

from __future__ import annotations

from promptserve.models.artifacts import ArtifactError
from promptserve.models.clip.methods.anomalyclip import AnomalyCLIPMethod
from promptserve.models.clip.methods.base import ClassHead, PromptMethod
from promptserve.models.clip.methods.cocoop import CoCoOpMethod
from promptserve.models.clip.methods.coop import CoOpMethod, KgCoOpMethod
from promptserve.models.clip.methods.cupl import CuPLMethod
from promptserve.models.clip.methods.deep import IVLPMethod, MaPLeMethod
from promptserve.models.clip.methods.l2p import L2PMethod
from promptserve.models.clip.methods.mocoop import MoCoOpMethod
from promptserve.models.clip.methods.templates import TemplatesMethod

METHODS: dict[str, type[PromptMethod]] = {
    m.name: m
    for m in (
        TemplatesMethod,
        CoOpMethod,
        KgCoOpMethod,
        CoCoOpMethod,
        CuPLMethod,
        MaPLeMethod,
        IVLPMethod,
        AnomalyCLIPMethod,
        L2PMethod,
        MoCoOpMethod,
    )
}


def get_method(name: str) -> type[PromptMethod]:
    try:
        return METHODS[name]
    except KeyError:
        raise ArtifactError(
            f"unknown prompt method {name!r}; available: {sorted(METHODS)}"
        ) from None


__all__ = [
    "METHODS",
    "AnomalyCLIPMethod",
    "ClassHead",
    "CoCoOpMethod",
    "CoOpMethod",
    "CuPLMethod",
    "IVLPMethod",
    "KgCoOpMethod",
    "MaPLeMethod",
    "PromptMethod",
    "TemplatesMethod",
    "get_method",
]
