"""`promptserve` CLI error handling: SDK errors and failed export parity checks are one line on
stderr (`promptserve <command>: error: <message>`) and exit status 1, never a traceback; the
existing status 2 for bad arguments and files stays; other bugs still show their traceback.

The SDK cases run the real entry point in a subprocess against a real local HTTP server (or a
port nobody listens on), because a traceback is only visible from outside the process.
"""

from __future__ import annotations

import importlib
import socket
import subprocess
import sys

import pytest
from local_server import running_server

from promptserve import cli

PREFIX = "promptserve prompts: error: "
# Exits with main()'s status and reports whether the CLI pulled in torch on the way.
RUN_MAIN = (
    "import sys; from promptserve.cli import main; code = main(sys.argv[1:]); "
    "print('torch' in sys.modules); sys.exit(code)"
)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", RUN_MAIN, *args], capture_output=True, text=True, timeout=120
    )


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def _dead_url() -> str:
    """A local URL on a port nobody listens on (bound, read, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_prompt_not_found_is_one_line_and_status_1():
    with running_server() as server:
        message = "no prompt 'nope' is registered; list them with GET /v1/prompts"
        error = {"error": {"type": "prompt_not_found", "message": message, "param": "prompt_id"}}
        server.routes[("DELETE", "/v1/prompts/nope")] = lambda body: (404, error)
        out = _cli("prompts", "rm", "nope", "--url", server.url)
    assert out.returncode == 1, out.stderr
    assert _one_line(out.stderr) == f"{PREFIX}404 prompt_not_found: {message}"
    assert out.stdout.strip() == "False"  # no torch for a registry command


def test_unreachable_server_is_one_line_and_status_1():
    url = _dead_url()
    out = _cli("prompts", "list", "--url", url)
    assert out.returncode == 1, out.stderr
    line = _one_line(out.stderr)
    assert line.startswith(PREFIX + "Connection error"), line
    assert f"{url}/v1/prompts" in line  # says which server could not be reached
    assert out.stdout.strip() == "False"


def test_multi_line_error_body_is_printed_on_one_line():
    with running_server() as server:
        page = b"<html>\n<body>\n  bad   gateway\n</body>\n</html>\n"
        final = {"x-should-retry": "false"}  # no retries: the first answer is the error
        server.routes[("GET", "/v1/prompts")] = lambda body: (502, page, final)
        out = _cli("prompts", "list", "--url", server.url)
    assert out.returncode == 1, out.stderr
    assert _one_line(out.stderr) == f"{PREFIX}502 error: <html> <body> bad gateway </body> </html>"


def _export_parity_error() -> type[RuntimeError]:
    """The real ExportParityError, which every family's export raises (exporters/onnx.py)."""
    return importlib.import_module("promptserve.exporters.onnx").ExportParityError


def test_export_parity_error_is_one_line_and_status_1(monkeypatch, capsys, tmp_path):
    error = _export_parity_error()
    assert issubclass(error, RuntimeError)

    def failing_export(args):
        raise error(
            "ONNX export of tiny differs from torch above 0.0001: vision max|diff|=3.10e-02 "
            f"(report in {args.output}/bundle.json)"
        )

    monkeypatch.setattr(cli, "cmd_export", failing_export)
    assert cli.main(["export", "--backbone", "demo", "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert _one_line(err) == (
        "promptserve export: error: ONNX export of tiny differs from torch above 0.0001: "
        f"vision max|diff|=3.10e-02 (report in {tmp_path}/bundle.json)"
    )


def test_bad_arguments_keep_status_2_and_bugs_keep_their_traceback(monkeypatch, capsys, tmp_path):
    def bad_value(args):
        raise ValueError("unknown backbone 'nope'")

    monkeypatch.setattr(cli, "cmd_export", bad_value)
    assert cli.main(["export", "--backbone", "nope", "-o", str(tmp_path)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line == "promptserve export: error: unknown backbone 'nope'"

    def bug(args):
        raise RuntimeError("a bug, not a user error")

    monkeypatch.setattr(cli, "cmd_export", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["export", "--backbone", "demo", "-o", str(tmp_path)])
