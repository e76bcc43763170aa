"""deploy/: the RayService rendered from the app config, the kustomize tree, and every manifest
against the schemas the cluster would apply (CRDs from ../shared/k8s-crds with unknown fields
rejected, core kinds with kubernetes-validate --strict), without a cluster."""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from promptserve.deploy.k8s import (
    ClusterConfig,
    RenderError,
    Storage,
    cluster_app_config,
    dump,
    render,
    render_rayservice,
)
from promptserve.serving.config import AppConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("cpu-dev", "gpu-prod", "gpu-triton", "retrieval", "gpu-generate")
# the app config each overlay renders (the one `promptserve serve` runs locally)
APP_CONFIGS = {"retrieval": "config-retrieve.yaml", "gpu-generate": "config-generate.yaml"}
CRDS = ROOT.parent / "shared" / "k8s-crds"


def _strict(schema: dict) -> dict:
    """A CRD's openAPIV3Schema as JSON Schema that rejects fields the CRD does not declare, as
    the API server's structural pruning with `--validate=strict` does."""
    s = copy.deepcopy(schema)

    def walk(node: dict) -> None:
        if node.pop("x-kubernetes-int-or-string", False):
            node.pop("type", None)
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        preserve = node.pop("x-kubernetes-preserve-unknown-fields", False)
        for key in [k for k in node if k.startswith("x-kubernetes-")]:
            node.pop(key)
        props = node.get("properties")
        if props is not None:
            for child in props.values():
                walk(child)
            if not preserve and "additionalProperties" not in node:
                node["additionalProperties"] = False
        if isinstance(node.get("items"), dict):
            walk(node["items"])
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"])
        for key in ("allOf", "anyOf", "oneOf"):
            for child in node.get(key, []):
                walk(child)

    walk(s)
    return s


@functools.cache
def _crd_schemas() -> dict[str, dict]:
    """Each CRD's stored version's schema, by kind: read once (the KubeRay CRDs are 1 MB of
    YAML each), with libyaml's loader where PyYAML has it."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    schemas = {}
    for path in CRDS.glob("*.yaml"):
        crd = yaml.load(path.read_text(), Loader=loader)  # a safe loader
        version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
        schemas[crd["spec"]["names"]["kind"]] = _strict(version["schema"]["openAPIV3Schema"])
    return schemas


def _crd_validator(kind: str):
    jsonschema = pytest.importorskip("jsonschema")
    if not CRDS.is_dir():
        pytest.skip(f"CRD schemas not found at {CRDS}")
    schema = _crd_schemas().get(kind)
    assert schema is not None, f"no CRD for {kind} in {CRDS}"
    return jsonschema.Draft7Validator(schema)


def _rendered(overlay: str) -> dict:
    return render(
        ROOT / "examples" / APP_CONFIGS.get(overlay, "config.yaml"),
        DEPLOY / "overlays" / overlay / "cluster.yaml",
        data_root=ROOT,
    )


def _kustomized(overlay: str) -> list[dict]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "overlays" / overlay)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_committed_rayservice_is_rendered_from_the_app_config(overlay):
    """No drift: each overlay's RayService is what `promptserve k8s render` makes of its app
    config, examples/config.yaml or APP_CONFIGS' (regenerate with the command in the overlay's
    cluster.yaml)."""
    committed = (DEPLOY / "overlays" / overlay / "rayservice.yaml").read_text()
    assert committed == dump(_rendered(overlay))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_render_and_validate(overlay):
    docs = _kustomized(overlay)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "Namespace",
            "PersistentVolumeClaim",
            "ConfigMap",
            "PodMonitor",
            "PrometheusRule",
            "RayService",
        ]
    )
    kv = pytest.importorskip("kubernetes_validate")
    for doc in docs:
        if doc["apiVersion"] in ("v1", "apps/v1"):
            kv.validate(doc, "1.33", strict=True)
        else:
            errors = sorted(_crd_validator(doc["kind"]).iter_errors(doc), key=str)
            assert not errors, f"{doc['kind']}: " + "; ".join(
                f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]
            )
    assert all(d["metadata"].get("namespace", "promptserve") == "promptserve" for d in docs)


def test_the_crd_check_rejects_unknown_fields():
    """The strict CRD validation used above can fail: a misspelt field is an error."""
    doc = _rendered("gpu-prod")
    doc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplica"] = 3
    errors = list(_crd_validator("RayService").iter_errors(doc))
    assert any("maxReplica" in e.message for e in errors)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_serve_config_is_accepted_by_ray_serve(overlay):
    schema = pytest.importorskip("ray.serve.schema")
    doc = _rendered(overlay)
    serve_config = schema.ServeDeploySchema.model_validate(
        yaml.safe_load(doc["spec"]["serveConfigV2"])
    )
    (app,) = serve_config.applications
    assert app.import_path == "promptserve.serving.app:app_builder"
    config = AppConfig.model_validate(app.args)  # the args are a valid app config
    assert config.bundle.startswith("/data/") and config.prompts.store == "/data/prompts"
    deployments = {d.name: d for d in app.deployments}
    retrieval = overlay == "retrieval"  # the llm family's app also runs the indexer
    expected = {"encoder", "gateway"} | ({"indexer"} if retrieval else set())
    if overlay == "gpu-generate":  # ... and, with a generator section, the generator
        expected |= {"indexer", "generator"}
        generator = deployments["generator"]
        assert generator.ray_actor_options.num_gpus == 1
        assert config.generator is not None and config.generator.engine == "vllm"
        assert generator.max_ongoing_requests >= config.generator.max_waiting
    assert set(deployments) == expected
    encoder = deployments["encoder"]
    # the index engine's directory and its catalog are on the data volume, on every overlay
    assert (config.index.path, config.index.catalog) == ("/data/indexes", "/data/indexes/catalog")
    pods = [doc["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]]
    pods += [g["template"]["spec"] for g in doc["spec"]["rayClusterConfig"]["workerGroupSpecs"]]
    qdrant_keys = [
        e["valueFrom"]["secretKeyRef"]
        for pod in pods
        for e in pod["containers"][0]["env"]
        if e["name"] == "QDRANT_API_KEY"
    ]
    if overlay == "gpu-prod":
        assert encoder.ray_actor_options.num_gpus == 1
        assert encoder.autoscaling_config["max_replicas"] == 8
        limits = doc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"][
            "containers"
        ][0]["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == 1
    elif overlay == "gpu-triton":  # the Triton sidecar has the GPU; the encoder calls it
        assert encoder.ray_actor_options.num_gpus == 0
        assert config.engine.name == "triton" and config.engine.triton.url == "127.0.0.1:8101"
        pod = doc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
        ray_c, triton_c = pod["containers"]
        assert "nvidia.com/gpu" not in ray_c["resources"]["limits"]
        assert triton_c["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert "--model-repository=/data/triton-repo" in triton_c["args"]
        assert {p["name"] for p in triton_c["ports"]} >= {"triton-grpc", "triton-metrics"}
        # tensors through shared memory: one memory-backed /dev/shm in both containers
        assert config.engine.triton.shared_memory == "system"
        (dshm,) = [v for v in pod["volumes"] if v["name"] == "dshm"]
        assert dshm["emptyDir"]["medium"] == "Memory"
        for c in (ray_c, triton_c):
            assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    elif retrieval:  # the indexes are in a Qdrant service: two stateless indexer replicas
        assert config.index.engine == "qdrant"
        assert config.index.url == "http://qdrant.qdrant.svc.cluster.local:6333"
        assert deployments["indexer"].num_replicas == 2
        assert encoder.ray_actor_options.num_gpus == 1
        # Qdrant's key reaches head and workers from the chart's Secret, which may be absent
        key = {"name": "qdrant-apikey", "key": "api-key", "optional": True}
        assert qdrant_keys == [key, key]
    else:
        assert encoder.ray_actor_options.num_gpus == 0
    if not retrieval:  # the embedded index engine has no server, so no key is passed
        assert config.index.engine == "qdrant-edge" and qdrant_keys == []


def _serve_app(raw: dict, tmp_path: Path, cluster: ClusterConfig | None = None) -> dict:
    doc = render_rayservice(
        raw, cluster or ClusterConfig(), config_dir=tmp_path, data_root=tmp_path
    )
    return yaml.safe_load(doc["spec"]["serveConfigV2"])["applications"][0]


def test_retrieval_apps_get_the_indexer_without_the_bundle(tmp_path):
    """The bundle is not on this machine (it is on the cluster's volume): the app config as
    written says whether the app retrieves. An `index` or `indexer` section, in the app config
    or the cluster's overrides, adds the indexer deployment; otherwise there is none."""

    def names(raw: dict, cluster: ClusterConfig | None = None) -> set[str]:
        return {d["name"] for d in _serve_app(raw, tmp_path, cluster)["deployments"]}

    plain = {"bundle": "bundles/absent", "auth": {"enabled": False}}
    assert names(plain) == {"encoder", "gateway"}
    assert names({**plain, "index": {"engine": "qdrant-edge"}}) == {"encoder", "gateway", "indexer"}
    indexer = {**plain, "indexer": {"num_replicas": 1, "num_cpus": 2}}
    (ix,) = [d for d in _serve_app(indexer, tmp_path)["deployments"] if d["name"] == "indexer"]
    assert ix["num_replicas"] == 1 and ix["ray_actor_options"] == {"num_cpus": 2.0}
    server = ClusterConfig(
        app_overrides={"index": {"engine": "qdrant", "url": "http://q:6333"},
                       "indexer": {"num_replicas": 3}}
    )  # fmt: skip
    assert names(plain, server) == {"encoder", "gateway", "indexer"}


def test_the_index_api_key_follows_the_app_config(tmp_path):
    """The variable the indexer reads (index.api_key_env) is the one set from the Secret; a
    cluster without a key Secret (index_api_key: null) passes none."""
    raw = {
        "bundle": "bundles/absent",
        "auth": {"enabled": False},
        "index": {"engine": "qdrant", "url": "http://q:6333", "api_key_env": "MY_QDRANT_KEY"},
    }
    cluster = ClusterConfig(index_api_key={"name": "vector-db", "key": "token"})

    def env(c: ClusterConfig) -> dict[str, dict]:
        doc = render_rayservice(raw, c, config_dir=tmp_path, data_root=tmp_path)
        worker = doc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
        return {e["name"]: e for e in worker["containers"][0]["env"]}

    assert env(cluster)["MY_QDRANT_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "vector-db",
        "key": "token",
        "optional": True,
    }
    assert "QDRANT_API_KEY" not in env(cluster)
    assert "MY_QDRANT_KEY" not in env(cluster.model_copy(update={"index_api_key": None}))


def test_local_and_cluster_configs_agree():
    """What `promptserve serve examples/config.yaml` runs and what the cluster runs differ only
    in paths, HTTP binding and the overlay's declared overrides."""
    local = load_config(ROOT / "examples" / "config.yaml").model_dump(mode="json")
    app = yaml.safe_load(
        yaml.safe_load(dump(_rendered("cpu-dev")).split("\n", 1)[1])["spec"]["serveConfigV2"]
    )["applications"][0]["args"]
    differ = {k for k in local if local[k] != app[k]}
    # http: 0.0.0.0:8000 here; index: the engine's directory, on the volume
    assert differ - {"http"} == {"bundle", "prompts", "encoder", "auth", "index"}
    assert {k for k in local["index"] if local["index"][k] != app["index"][k]} <= {
        "path",
        "catalog",
    }
    assert {k for k in local["encoder"] if local["encoder"][k] != app["encoder"][k]} == {
        "autoscaling"
    }
    # the dev cluster has no key Secret, so it says it serves without keys
    assert local["auth"]["enabled"] is True and app["auth"] == {**local["auth"], "enabled": False}


def test_a_cluster_without_keys_for_an_app_that_asks_for_them_does_not_render():
    """`auth.enabled: true` with no Secret and no inline keys would refuse to start on the
    cluster: the render says so instead."""
    raw = yaml.safe_load((ROOT / "examples" / "config.yaml").read_text())
    cluster = ClusterConfig(api_keys_secret=None)
    with pytest.raises(RenderError, match="api_keys_secret"):
        render_rayservice(raw, cluster, config_dir=ROOT / "examples", data_root=ROOT)
    with_secret = render_rayservice(
        raw, ClusterConfig(), config_dir=ROOT / "examples", data_root=ROOT
    )
    env = with_secret["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"][
        "containers"
    ][0]["env"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
    assert refs["PROMPTSERVE_API_KEYS"]["key"] == "api-keys"
    assert refs["PROMPTSERVE_ADMIN_KEYS"] == {
        "name": "promptserve-api-keys",
        "key": "admin-keys",
        "optional": True,
    }


def test_paths_map_onto_the_data_volume(tmp_path):
    storage = Storage(mount_path="/mnt/data")
    raw = {"bundle": "bundles/b", "prompts": {"preload": ["../x/artifacts", "s3://bucket/a"]}}
    app = cluster_app_config(raw, storage, config_dir=tmp_path / "cfg", data_root=tmp_path)
    assert app["bundle"] == "/mnt/data/cfg/bundles/b"
    assert app["prompts"]["preload"] == ["/mnt/data/x/artifacts", "s3://bucket/a"]
    assert app["prompts"]["store"] == "/mnt/data/prompts" and app["http"]["host"] == "0.0.0.0"
    # the index engine's files and catalog: state the cluster keeps, on the volume
    assert app["index"]["path"] == "/mnt/data/indexes"
    assert app["index"]["catalog"] == "/mnt/data/indexes/catalog"
    elsewhere = Storage(mount_path="/mnt/data", indexes="/mnt/fast/ix")
    mine = {"bundle": "b", "index": {"path": "~/ix", "catalog": "~/ix/cat"}}
    app = cluster_app_config(mine, elsewhere, config_dir=tmp_path, data_root=tmp_path)
    assert (app["index"]["path"], app["index"]["catalog"]) == (
        "/mnt/fast/ix",
        "/mnt/fast/ix/catalog",
    )
    with pytest.raises(RenderError, match="data root"):
        cluster_app_config(
            {"bundle": "/elsewhere/b"}, storage, config_dir=tmp_path, data_root=tmp_path
        )
    url = cluster_app_config({"bundle": "gs://b/vit", "prompts": {"store": "s3://p"}}, storage,
                             config_dir=tmp_path, data_root=tmp_path)  # fmt: skip
    assert url["bundle"] == "gs://b/vit" and url["prompts"]["store"] == "s3://p"


def test_cli_renders_to_a_directory(tmp_path):
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "promptserve.cli", "k8s", "render", str(ROOT / "examples" / "config.yaml"),
         "--cluster", str(DEPLOY / "overlays" / "cpu-dev" / "cluster.yaml"), "--data-root", str(ROOT),
         "-o", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "rayservice.yaml").read_text() == (
        DEPLOY / "overlays" / "cpu-dev" / "rayservice.yaml"
    ).read_text()
    bad = subprocess.run(
        [sys.executable, "-m", "promptserve.cli", "k8s", "render", str(ROOT / "examples" / "config.yaml")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode != 0 and "data root" in bad.stderr


def test_cluster_config_rejects_unknown_settings():
    with pytest.raises(ValueError, match="gpu"):
        ClusterConfig.model_validate({"workers": {"gpu": 1}})


def _metric_names(text: str) -> set[str]:
    return set(re.findall(r"\b(ray_[a-z0-9_]+)", text))


def _declared_metrics() -> set[str]:
    """The series names serving/metrics.py declares, as Ray exports them: the `ray_` prefix,
    and a histogram's _bucket, _sum and _count series."""
    source = (ROOT / "serving" / "metrics.py").read_text()
    names = set()
    for kind, name in re.findall(r"rm\.(Counter|Gauge|Histogram)\(\s*\"([a-z0-9_]+)\"", source):
        suffixes = ("_bucket", "_sum", "_count") if kind == "Histogram" else ("",)
        names |= {f"ray_{name}{s}" for s in suffixes}
    return names


def test_alerts_and_dashboard_use_known_metric_families():
    """Every promptserve metric the alerts and the dashboard query is one serving/metrics.py
    declares (the exported names are checked against a live server in
    tests/e2e/test_deploy_serving.py); the Retrieval row plots the index and token metrics, the Generation row tokens/s, time to
    first token, inter-token latency and IDP selections per prompt."""
    rules = yaml.safe_load((DEPLOY / "base" / "prometheusrule.yaml").read_text())
    exprs = [r["expr"] for g in rules["spec"]["groups"] for r in g["rules"]]
    dash = json.loads((DEPLOY / "base" / "grafana-dashboard.json").read_text())
    panels = dash["panels"]
    targets = [t["expr"] for p in panels for t in p.get("targets", [])]  # rows have none
    assert len(exprs) >= 8 and len(targets) >= 20
    used = _metric_names("\n".join(exprs + targets))
    ours = {n for n in used if n.startswith("ray_promptserve_")}
    assert "ray_promptserve_index_query_latency_seconds_bucket" in _declared_metrics()
    assert ours <= _declared_metrics(), sorted(ours - _declared_metrics())

    def row(title: str) -> set[str]:
        """The metrics the panels of one row plot (up to the next row)."""
        (at,) = [i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == title]
        exprs = []
        for p in panels[at + 1 :]:
            if p["type"] == "row":
                break
            exprs += [t["expr"] for t in p["targets"]]
        return _metric_names("\n".join(exprs))

    assert row("Retrieval") == {
        "ray_promptserve_index_documents",
        "ray_promptserve_index_writes_total",
        "ray_promptserve_index_query_latency_seconds_bucket",
        "ray_promptserve_tokens_total",
    }
    assert row("Generation") == {
        "ray_promptserve_generated_tokens_total",
        "ray_promptserve_prompt_tokens_total",
        "ray_promptserve_time_to_first_token_seconds_bucket",
        "ray_promptserve_inter_token_latency_seconds_bucket",
        "ray_promptserve_pool_selections_total",
    }
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))


def test_retrieval_alerts_watch_the_index():
    """A slow index (p99 search time by mode) and failing index writes (5xx on the write
    routes, shed load excluded) alert; an indexer failing its health check is the replica
    alert's, which covers every deployment."""
    rules = yaml.safe_load((DEPLOY / "base" / "prometheusrule.yaml").read_text())
    alerts = {r["alert"]: r for g in rules["spec"]["groups"] for r in g["rules"]}
    latency = alerts["PromptserveIndexQueryLatencyHigh"]["expr"]
    assert "ray_promptserve_index_query_latency_seconds_bucket" in latency
    assert "by (le, mode)" in latency and latency.strip().endswith("> 1")
    writes = alerts["PromptserveIndexWritesFailing"]["expr"]
    route = re.search(r'route=~"([^"]+)"', writes).group(1).replace("\\\\", "\\")
    for name in ("indexes.create", "indexes.delete", "indexes.documents.add",
                 "indexes.documents.delete"):  # fmt: skip
        assert re.fullmatch(route, name), name
    for name in ("indexes.list", "indexes.documents.lookup", "retrieve", "indexesXcreate"):
        assert not re.fullmatch(route, name), name
    assert 'status!="503"' in writes
    served = "".join(f.read_text() for f in (ROOT / "models" / "llm" / "serve").glob("*.py"))
    for name in ("indexes.create", "indexes.documents.add"):  # the routes' metric tags
        assert f'observe("{name}"' in served, name
    assert "by (deployment)" in alerts["PromptserveReplicasUnhealthy"]["expr"]
