"""`promptserve export --format triton`: every generated config.pbtxt parses as Triton's own
`ModelConfig` and matches its ONNX graph; TensorRT requests where it is absent fail plainly."""

from __future__ import annotations

import subprocess
import sys

import pytest

from promptserve.exporters.triton import TritonOptions, write_model_repository


@pytest.fixture(scope="module")
def repository(tiny_bundle, tmp_path_factory):
    repo = tmp_path_factory.mktemp("triton-repo")
    write_model_repository(tiny_bundle, repo, TritonOptions(instance_kind="KIND_CPU"))
    return repo


def test_every_config_parses_and_matches_its_graph(repository, tiny_bundle):
    from promptserve.exporters.triton import CONFIG_FILE, TritonError, check_config, parse_config

    served = {p.name for p in repository.iterdir() if (p / CONFIG_FILE).exists()}
    # every graph but the prompted text graph (a per-call scalar), which the engine runs itself
    assert served == {f"promptserve_{g}" for g in tiny_bundle.manifest.graphs} - {
        "promptserve_text_prompted"
    }
    for name in served:
        config = parse_config((repository / name / CONFIG_FILE).read_text())
        check_config(config, tiny_bundle.graph_path(name.removeprefix("promptserve_")))
    # and the check can fail: a config whose dims disagree with the graph
    text = (repository / "promptserve_vision" / CONFIG_FILE).read_text()
    wrong = parse_config(text.replace("dims: [ 3, 224, 224 ]", "dims: [ 3, 336, 336 ]"))
    with pytest.raises(TritonError, match="dims"):
        check_config(wrong, tiny_bundle.graph_path("vision"))


def test_cli_writes_a_repository_and_refuses_tensorrt_where_absent(tiny_bundle, tmp_path):
    from promptserve.exporters.triton import tensorrt_available

    cmd = [sys.executable, "-m", "promptserve.cli", "export", "--format", "triton", "--bundle",
           str(tiny_bundle.dir), "-o", str(tmp_path / "repo")]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "promptserve_text_prompted: left out" in out.stdout
    assert (tmp_path / "repo" / "promptserve_vision" / "1" / "model.onnx").exists()
    trt = subprocess.run([*cmd, "--tensorrt", "fp16"], capture_output=True, text=True, timeout=300)
    if tensorrt_available() is None:
        assert trt.returncode == 2 and "TensorRT is not available here" in trt.stderr
    else:
        assert trt.returncode == 2 and "not implemented" in trt.stderr
