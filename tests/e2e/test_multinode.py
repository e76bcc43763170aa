"""Multi-node Ray: encoder replicas on a second node, that node killed under SDK traffic, the
service recovering on a replacement node (tests/multinode_scenario.py, in its own process:
one Ray per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.multinode


def test_encoders_on_a_killed_node_are_rescheduled(tiny_bundle, tmp_path):
    script = Path(__file__).resolve().parents[1] / "multinode_scenario.py"
    out = subprocess.run(
        [sys.executable, str(script), str(tiny_bundle.dir), str(tmp_path)],
        capture_output=True, text=True, timeout=420,
        env={**os.environ, "RAY_AUTH_MODE": "disabled", "TQDM_DISABLE": "1"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    worker, replacement = report["worker_node"], report["replacement_node"]
    assert report["encoder_nodes_before"] == [worker, worker]  # placed by the custom resource
    assert report["encoder_nodes_after"] == [replacement, replacement]  # rescheduled
    assert report["ok_before_kill"] > 0 and report["ok_after_kill"] >= 5  # recovered
    assert report["wrong"] == 0  # no request the SDK reported as a success was wrong
    # what the SDK could not retry away surfaced as its typed errors, not as results or crashes
    typed = ("InternalServerError", "APIStatusError", "APIConnectionError", "APITimeoutError",
             "ServerOverloaded")  # fmt: skip
    assert all(e.split(":")[1].strip() in typed for e in report["errors"]), report["errors"]
