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
    from promptserve.exporters.tensorrt import tensorrt_provider

    cmd = [sys.executable, "-m", "promptserve.cli", "export", "--format", "triton", "--bundle",
           str(tiny_bundle.dir)]  # fmt: skip
    out = subprocess.run([*cmd, "-o", str(tmp_path / "repo")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "promptserve_text_prompted: left out" in out.stdout
    assert (tmp_path / "repo" / "promptserve_vision" / "1" / "model.onnx").exists()
    if tensorrt_provider():
        pytest.skip("TensorRT is available here: the refusal cannot be shown")
    trt = subprocess.run(
        [*cmd, "-o", str(tmp_path / "trt"), "--tensorrt", "fp16"], capture_output=True, text=True
    )
    assert trt.returncode == 2 and "TensorRT is not available here" in trt.stderr
    assert not (tmp_path / "trt").exists()  # nothing half-written


def test_tensorrt_accelerator_in_configs(tiny_bundle, tmp_path):
    """`--tensorrt fp16 --tensorrt-on-server`: the static-shape graphs name Triton's tensorrt
    accelerator with a profile over the dynamic batcher's sizes; the text graphs and the
    prompted vision graph (dynamic sequence / prompt length) do not; every config still parses
    and matches its graph."""
    from promptserve.exporters.triton import CONFIG_FILE, check_config, parse_config
    from promptserve.serving.engines.graph_rules import cache_prefix

    cmd = [sys.executable, "-m", "promptserve.cli", "export", "--format", "triton", "--bundle",
           str(tiny_bundle.dir), "-o", str(tmp_path), "--tensorrt", "fp16", "--tensorrt-on-server",
           "--triton-max-batch-size", "32", "--tensorrt-cache", "/data/trt-cache"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "nothing was built or checked here" in out.stdout
    accelerated = set()
    for path in tmp_path.glob("*/" + CONFIG_FILE):
        config = parse_config(path.read_text())
        check_config(config, tiny_bundle.graph_path(path.parent.name.removeprefix("promptserve_")))
        found = config.optimization.execution_accelerators.gpu_execution_accelerator
        if not found:
            continue
        accelerated.add(path.parent.name.removeprefix("promptserve_"))
        assert [a.name for a in found] == ["tensorrt"]
        params = dict(found[0].parameters)
        assert params["precision_mode"] == "FP16"
        assert params["trt_engine_cache_enable"] == "1"
        assert params["trt_engine_cache_path"] == "/data/trt-cache"
        assert params["trt_profile_min_shapes"] == "pixel_values:1x3x224x224"
        assert params["trt_profile_opt_shapes"] == "pixel_values:16x3x224x224"
        assert params["trt_profile_max_shapes"] == "pixel_values:32x3x224x224"
        graph = tiny_bundle.graph_path(path.parent.name.removeprefix("promptserve_"))
        assert params["trt_engine_cache_prefix"] == cache_prefix(graph)
    m = tiny_bundle.manifest
    assert accelerated == {"vision", "anomaly", "winclip"} | {
        s.graph for s in m.config.segment.values()
    }


def test_tensorrt_options_are_checked():
    from pydantic import ValidationError

    from promptserve.serving.engines.graph_rules import TensorRTOptions, profile_shapes

    with pytest.raises(ValidationError, match="ONNX Runtime backend"):
        TritonOptions(backend="python", tensorrt=TensorRTOptions())
    with pytest.raises(ValidationError, match="max_batch 8 is below max_batch_size 64"):
        TritonOptions(tensorrt=TensorRTOptions(max_batch=8))
    with pytest.raises(ValidationError, match="KIND_GPU"):
        TritonOptions(instance_kind="KIND_CPU", tensorrt=TensorRTOptions())
    with pytest.raises(ValidationError, match="start at batch 1"):
        TritonOptions(tensorrt=TensorRTOptions(min_batch=2))
    with pytest.raises(ValidationError, match="min_batch 9 exceeds max_batch 8"):
        TensorRTOptions(min_batch=9, max_batch=8)
    shapes = {"pixel_values": ("batch", 3, 336, 336), "eot_index": ("batch",)}
    assert profile_shapes(shapes, 4) == "pixel_values:4x3x336x336,eot_index:4"


def test_local_build_refuses_without_tensorrt(tiny_bundle):
    from promptserve.exporters.tensorrt import (
        TensorRTOptions,
        TensorRTUnavailable,
        build_engines,
        tensorrt_provider,
    )

    if tensorrt_provider():
        pytest.skip("TensorRT is available here")
    with pytest.raises(TensorRTUnavailable, match="TensorrtExecutionProvider"):
        build_engines(tiny_bundle, TensorRTOptions())


def test_engine_cache_prefix_names_the_weights(tiny_bundle, tmp_path):
    """ONNX Runtime keys cached engines by file and tensor names only: the prefix must change
    when the weights do, or two bundles of one architecture would share engines."""
    from promptserve.serving.engines.graph_rules import cache_prefix

    source = tiny_bundle.graph_path("vision")
    data = bytearray(source.read_bytes())
    copy = tmp_path / source.name
    copy.write_bytes(data)
    assert cache_prefix(copy) == cache_prefix(source)
    data[-1] ^= 1
    copy.write_bytes(data)
    assert cache_prefix(copy) != cache_prefix(source)
