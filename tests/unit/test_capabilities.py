"""The one capability gate (models/clip/capabilities.py): a method declares its tasks and the
graphs it needs; a request that cannot run is refused with what to export or where to go."""

from __future__ import annotations

import pytest

from promptserve.models.clip.capabilities import (
    CapabilityError,
    check_prompt,
    export_hint,
    require_graph,
    served_tasks,
)
from promptserve.models.clip.methods import METHODS

ALL = ("vision", "text", "vision_prompted", "text_prompted", "anomaly", "winclip", "segment_sclip")


def test_every_method_declares_tasks_and_graphs():
    for name, method in METHODS.items():
        assert method.tasks and method.tasks <= {"classify", "anomaly", "segment"}, name
        assert set(method.graphs) <= set(ALL), name
    assert METHODS["anomalyclip"].tasks == {"anomaly"}
    assert "segment" in METHODS["coop"].tasks and "segment" not in METHODS["maple"].tasks


def test_prompt_on_the_wrong_route_names_the_right_one():
    with pytest.raises(
        CapabilityError, match=r"serves /v1/classify and /v1/segment, not /v1/anomaly"
    ) as exc:
        check_prompt("anomaly", "coop", ALL, prompt_id="p")
    assert "register a prompt for /v1/anomaly (methods: anomalyclip)" in str(exc.value)
    assert exc.value.param == "prompt_id"
    with pytest.raises(CapabilityError, match="not /v1/segment"):
        check_prompt("segment", "cocoop", ALL, prompt_id="p")
    check_prompt("segment", "kgcoop", ALL, prompt_id="p")  # text-only prompts segment


def test_missing_graphs_name_the_export_option():
    plain = ("vision", "text")
    with pytest.raises(CapabilityError, match="without --no-deep-prompts"):
        check_prompt("classify", "maple", plain, prompt_id="p")
    with pytest.raises(CapabilityError, match="--anomaly-size"):
        check_prompt("anomaly", "anomalyclip", (*plain, "text_prompted"), prompt_id="p")
    with pytest.raises(CapabilityError, match="--segment clearclip") as exc:
        require_graph(plain, "segment_clearclip", what="clearclip segmentation", param="method")
    assert exc.value.param == "method"
    assert export_hint("winclip") == "export it with --winclip-scales"
    assert served_tasks(plain) == ["classify"]
    assert served_tasks(ALL) == ["classify", "anomaly", "segment"]
