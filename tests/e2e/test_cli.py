"""The `promptserve` CLI: help everywhere, import, export, the registry commands, the demo,
and `serve` shutting down cleanly on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import _free_port

from promptserve.cli import build_parser

CLI = [sys.executable, "-m", "promptserve.cli"]


def run(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def _all_commands(parser, prefix=()):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _all_commands(sub, (*prefix, name))


def test_help_on_every_command():
    commands = list(_all_commands(build_parser()))
    assert (
        ("import", "coop") in commands and ("prompts", "rm") in commands and ("serve",) in commands
    )
    for cmd in [(), *commands]:
        out = run(*cmd, "--help", timeout=60)
        assert out.returncode == 0 and "usage: promptserve" in out.stdout, (cmd, out.stderr)


def test_import_coop_and_templates(tmp_path, tiny_spec):
    ckpt = tmp_path / "prompt_learner" / "model.pth.tar-50"
    ckpt.parent.mkdir()
    ctx = torch.randn(4, 64, dtype=torch.float16)
    torch.save(
        {
            "state_dict": {"ctx": ctx, "token_prefix": torch.zeros(3, 1, 64)},
            "epoch": 50,
            "optimizer": {},
        },
        ckpt,
    )
    (tmp_path / "classes.txt").write_text("cat\ngolden_retriever\n# comment\nsea anemone\n")
    spec = f"{tiny_spec.arch}@{tiny_spec.weights}"
    out = run(
        "import",
        "coop",
        str(ckpt),
        "--classnames",
        str(tmp_path / "classes.txt"),
        "--backbone",
        spec,
        "--class-token-position",
        "middle",
        "-o",
        str(tmp_path / "coop"),
    )
    assert out.returncode == 0, out.stderr
    manifest = json.loads((tmp_path / "coop" / "manifest.json").read_text())
    assert manifest["method"] == "coop" and manifest["classnames"] == [
        "cat",
        "golden_retriever",
        "sea anemone",
    ]
    assert manifest["hparams"] == {"n_ctx": 4, "csc": False, "class_token_position": "middle"}
    assert manifest["backbone"] == tiny_spec.id and "epoch 50" in manifest["source"]
    out = run(
        "import",
        "templates",
        "--classnames",
        str(tmp_path / "classes.txt"),
        "--backbone",
        spec,
        "-o",
        str(tmp_path / "t"),
    )
    assert (
        out.returncode == 0
        and len(json.loads((tmp_path / "t" / "manifest.json").read_text())["templates"]) == 80
    )
    bad = run(
        "import",
        "coop",
        str(tmp_path / "classes.txt"),
        "--classnames",
        str(tmp_path / "classes.txt"),
        "--backbone",
        spec,
        "-o",
        str(tmp_path / "x"),
    )
    assert bad.returncode == 2 and "error" in bad.stderr and "Traceback" not in bad.stderr


def test_import_kgcoop_and_cupl(tmp_path, tiny_spec):
    spec = f"{tiny_spec.arch}@{tiny_spec.weights}"
    ckpt = tmp_path / "model.pth.tar-100"
    state = {
        "ctx": torch.randn(4, 64),
        "bias_vectors": torch.randn(1, 512),
        "meta_net.linear1.bias": torch.randn(512),
    }
    torch.save({"state_dict": state, "epoch": 100}, ckpt)
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    out = run(
        "import",
        "kgcoop",
        str(ckpt),
        "--classnames",
        str(tmp_path / "classes.txt"),
        "--backbone",
        spec,
        "-o",
        str(tmp_path / "kg"),
    )
    assert out.returncode == 0, out.stderr
    manifest = json.loads((tmp_path / "kg" / "manifest.json").read_text())
    assert manifest["method"] == "kgcoop" and manifest["hparams"]["class_token_position"] == "end"
    meta = {
        "ctx": torch.randn(4, 64),
        "meta_net.linear1.weight": torch.randn(4, 64),
        "meta_net.linear1.bias": torch.randn(4),
        "meta_net.linear2.weight": torch.randn(64, 4),
        "meta_net.linear2.bias": torch.randn(64),
    }
    torch.save({"state_dict": meta, "epoch": 10}, tmp_path / "cocoop.pth.tar-10")
    out = run("import", "cocoop", str(tmp_path / "cocoop.pth.tar-10"), "--classnames", str(tmp_path / "classes.txt"),
              "--backbone", spec, "-o", str(tmp_path / "co"))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "co" / "manifest.json").read_text())["hparams"] == {"n_ctx": 4}
    (tmp_path / "cupl.json").write_text(
        json.dumps({"cat": ["A small feline."], "dog": ["A loyal pet.", "Barks."]})
    )
    out = run(
        "import",
        "cupl",
        str(tmp_path / "cupl.json"),
        "--variant",
        "both",
        "--backbone",
        spec,
        "-o",
        str(tmp_path / "cu"),
    )
    assert out.returncode == 0, out.stderr
    manifest = json.loads((tmp_path / "cu" / "manifest.json").read_text())
    assert (
        manifest["class_texts"] == [["A small feline."], ["A loyal pet.", "Barks."]]
        and len(manifest["templates"]) == 80
    )


def test_export_custom_config(tmp_path, tiny_spec):
    out = run(
        "export", "--backbone", f"{tiny_spec.arch}@{tiny_spec.weights}", "-o", str(tmp_path / "b")
    )
    assert out.returncode == 0, out.stderr
    assert "vision graph: max|onnx-torch|=" in out.stdout
    assert "vision_prompted graph: max|onnx-torch|=" in out.stdout
    assert json.loads((tmp_path / "b" / "bundle.json").read_text())["backbone_id"] == tiny_spec.id


def test_prompts_commands_against_a_server(server, tiny_spec, tmp_path):
    from promptserve.models.clip.export.importers.templates import build_templates

    build_templates(["a", "b"], backbone_id=tiny_spec.id, templates=["a {}."]).save(
        tmp_path / "art"
    )
    url = ["--url", server["base_url"]]
    assert (
        "registered cli-prompt"
        in run("prompts", "add", str(tmp_path / "art"), "--prompt-id", "cli-prompt", *url).stdout
    )
    assert "cli-prompt" in run("prompts", "list", *url).stdout
    assert run("prompts", "rm", "cli-prompt", *url).returncode == 0
    # An SDK error (PromptNotFound) is one line on stderr and exit status 1, not a traceback.
    gone = run("prompts", "rm", "cli-prompt", *url)
    assert gone.returncode == 1, gone.stderr
    assert "Traceback" not in gone.stderr, gone.stderr
    (line,) = gone.stderr.strip().splitlines()
    assert line.startswith("promptserve prompts: error: 404 prompt_not_found:"), line
    assert "cli-prompt" in line


def test_demo_once_exits_zero(tmp_path):
    out = run(
        "demo",
        "--once",
        "--port",
        str(_free_port()),
        "--workdir",
        str(tmp_path),
        env={"PROMPTSERVE_CACHE": str(tmp_path / "cache")},
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert "prompt demo-coop:" in out.stdout and "RANDOM weights" in out.stdout
    assert "prompt demo-maple:" in out.stdout
    # the anomaly heat-map and the segmentation overlay the demo promises, written as PNGs
    assert "WinCLIP on circle.png" in out.stdout and "SCLIP on circle.png" in out.stdout
    for picture in ("anomaly-circle.png", "segment-circle.png"):
        assert (tmp_path / picture).stat().st_size > 0
    # generation through the openai client: a PEFT soft prompt, an IDP pool's choice, a stream
    lines = out.stdout.splitlines()
    assert any(line.strip().startswith("peft-demo") and "->" in line for line in lines)
    assert any(line.strip().startswith("idp-demo") and "[pool prompt" in line for line in lines)
    assert "streamed chat with peft-demo:" in out.stdout


def test_serve_preloads_and_stops_cleanly_on_ctrl_c(tiny_bundle, tiny_spec, tmp_path):
    from promptserve.models.clip.export.importers.templates import build_templates

    build_templates(["a", "b"], backbone_id=tiny_spec.id).save(tmp_path / "arts" / "preloaded-pets")
    port = _free_port()
    (tmp_path / "app.yaml").write_text(
        f"bundle: {tiny_bundle.dir}\nhttp: {{port: {port}}}\nlog_level: WARNING\n"
        f"prompts: {{store: {tmp_path / 'store'}, preload: [arts]}}\n"
    )
    proc = subprocess.Popen(
        [*CLI, "serve", str(tmp_path / "app.yaml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "Ctrl-C to stop" in line or proc.poll() is not None:
                break
        assert "Ctrl-C to stop" in lines[-1], "".join(lines)[-3000:]
        import httpx

        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200
        listed = httpx.get(f"http://127.0.0.1:{port}/v1/prompts", timeout=10).json()["data"]
        assert [p["prompt_id"] for p in listed] == ["preloaded-pets"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            pytest.fail("serve did not exit on SIGINT")


def test_import_maple_and_promptsrc(tmp_path, tiny_spec, tiny_model):
    from deep_checkpoints import ivlp_checkpoint, maple_checkpoint

    spec = f"{tiny_spec.arch}@{tiny_spec.weights}"
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    maple, _ = maple_checkpoint(
        tmp_path / "m", tiny_model, n_ctx=2, depth=3, ctx_init="a photo of a", fp16=True
    )
    src, _ = ivlp_checkpoint(
        tmp_path / "s", tiny_model, n_text=4, n_vision=4, depth_text=3, depth_vision=3,
        ctx_init="", fp16=True,
    )  # fmt: skip
    for method, ckpt, extra, prefix in (
        ("maple", maple, [], "a photo of a"),
        ("promptsrc", src, ["--ctx-init", ""], "X X X X"),
    ):
        out = run("import", method, str(ckpt), "--classnames", str(tmp_path / "classes.txt"),
                  "--backbone", spec, "-o", str(tmp_path / method), *extra)  # fmt: skip
        assert out.returncode == 0, out.stderr
        manifest = json.loads((tmp_path / method / "manifest.json").read_text())
        assert manifest["hparams"] == {"prompt_prefix": prefix}
        assert manifest["method"] == ("maple" if method == "maple" else "ivlp")


def test_import_anomalyclip(tmp_path, tiny_spec):
    """A file laid out as AnomalyCLIP's train.py saves it: {"prompt_learner": state_dict}."""
    state = {
        "ctx_pos": torch.randn(1, 1, 12, 64),
        "ctx_neg": torch.randn(1, 1, 12, 64),
        **{f"compound_prompts_text.{i}": torch.randn(4, 64) for i in range(8)},
        **{f"compound_prompt_projections.{i}.weight": torch.randn(896, 64) for i in range(8)},
        "token_prefix_pos": torch.randn(1, 1, 1, 64),
        "tokenized_prompts_pos": torch.zeros(1, 1, 77, dtype=torch.long),
    }
    torch.save({"prompt_learner": state}, tmp_path / "epoch_15.pth")
    out = run("import", "anomalyclip", str(tmp_path / "epoch_15.pth"), "--image-size", "336",
              "--backbone", f"{tiny_spec.arch}@{tiny_spec.weights}", "-o", str(tmp_path / "ac"))  # fmt: skip
    assert out.returncode == 0, out.stderr
    manifest = json.loads((tmp_path / "ac" / "manifest.json").read_text())
    assert manifest["method"] == "anomalyclip" and manifest["task"] == "anomaly"
    assert manifest["hparams"]["image_size"] == 336 and manifest["hparams"]["taps"] == [
        6,
        12,
        18,
        24,
    ]
    bad = run("import", "anomalyclip", str(tmp_path / "epoch_15.pth"), "--backbone", "ViT-B-32:openai",
              "-o", str(tmp_path / "bad"))  # fmt: skip
    assert bad.returncode != 0 and "text width" in bad.stderr
