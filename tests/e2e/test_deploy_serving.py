"""The deploy/ artifacts against a running application: the serveConfigV2 that `promptserve k8s
render` writes, deployed to a Ray cluster the way KubeRay deploys it (Serve's controller
`deploy_apps`), serves requests; every metric name the alerts and the dashboard use is exported
by the running application after traffic."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import yaml
from conftest import make_image, serve_config

from promptserve import Client
from promptserve.deploy.k8s import ClusterConfig, Storage, render_rayservice

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
GPU_ONLY = {"ray_node_gpus_utilization"}  # Ray exports it on nodes with GPUs only


def test_rendered_serve_config_deploys_and_serves(ray_cluster, tiny_bundle, tmp_path):
    from ray.serve._private import api as serve_api
    from ray.serve.schema import ServeDeploySchema

    (tmp_path / "bundles").mkdir()
    (tmp_path / "bundles" / "tiny").symlink_to(tiny_bundle.dir, target_is_directory=True)
    app = {
        "name": "k8s-rendered",
        "route_prefix": "/k8s",
        "topology": "fused",
        "bundle": "bundles/tiny",
        "encoder": {"num_cpus": 0.25, "max_batch_size": 8},
        "gateway": {"num_cpus": 0.0},
        "auth": {"api_keys": [], "api_keys_env": None},
    }
    cluster = ClusterConfig(storage=Storage(pvc=None, mount_path=str(tmp_path)))
    manifest = render_rayservice(app, cluster, config_dir=tmp_path, data_root=tmp_path)
    config = ServeDeploySchema.model_validate(yaml.safe_load(manifest["spec"]["serveConfigV2"]))
    client = serve_api.serve_start()
    client.deploy_apps(config, _blocking=True)
    from ray import serve

    try:
        url = f"http://127.0.0.1:{ray_cluster['http_port']}/k8s"
        deadline = time.time() + 120
        while httpx.get(f"{url}/readyz", timeout=10).status_code != 200:
            assert time.time() < deadline, "the rendered app never became ready"
            time.sleep(1)
        with Client(url) as c:
            out = c.classify([make_image(31), make_image(32)], labels=["cat", "dog"])
            assert [r.index for r in out.results] == [0, 1]
            assert c.model_info().backbone == tiny_bundle.backbone_id
    finally:
        serve.delete("k8s-rendered")


def _used_metric_names(retrieval: bool = False, row: str | None = None) -> set[str]:
    """The metrics the alerts and the dashboard query: those of the retrieval alert group and
    the dashboard's Retrieval row (which only an app of a retrieving family exports), or the
    others (the rows above Retrieval); with `row`, only that dashboard row's panels."""
    rules = yaml.safe_load((DEPLOY / "base" / "prometheusrule.yaml").read_text())
    dash = json.loads((DEPLOY / "base" / "grafana-dashboard.json").read_text())
    panels = dash["panels"]
    rows = [i for i, p in enumerate(panels) if p["type"] == "row"]

    def in_row(title: str) -> list[dict]:
        at = next(i for i in rows if panels[i]["title"] == title)
        end = next((i for i in rows if i > at), len(panels))
        return panels[at + 1 : end]

    if row is not None:
        exprs = [t["expr"] for p in in_row(row) for t in p["targets"]]
        return set(re.findall(r"\b(ray_[a-z0-9_]+)", "\n".join(exprs)))
    groups = rules["spec"]["groups"]
    exprs = [r["expr"] for g in groups if g["name"].endswith(".retrieval") == retrieval
             for r in g["rules"]]  # fmt: skip
    first = next(i for i in rows if panels[i]["title"] == "Retrieval")
    chosen = in_row("Retrieval") if retrieval else panels[:first]
    exprs += [t["expr"] for p in chosen for t in p.get("targets", [])]
    return set(re.findall(r"\b(ray_[a-z0-9_]+)", "\n".join(exprs)))


def _scrape_until_exported(metrics_port: int, wanted: set[str]) -> None:
    families: set[str] = set()
    deadline = time.time() + 60
    while time.time() < deadline:  # Ray reports metrics every second in the test cluster
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        families = set(re.findall(r"^(ray_[a-z0-9_]+)", text, re.M))
        if wanted <= families:
            break
        time.sleep(2)
    missing = sorted(wanted - families)
    assert not missing, f"used by deploy/ but not exported: {missing}"


def test_alerts_and_dashboard_use_exported_metrics(server, ray_cluster, tiny_spec, tmp_path):
    from promptserve.models.clip.export.importers.templates import build_templates

    url = server["base_url"]

    def art(*classes: str):  # distinct classes: distinct content ids, so distinct heads
        return build_templates(list(classes), backbone_id=tiny_spec.id, templates=["a {}."])

    with Client(url) as c:
        c.register_prompt(art("cat", "dog").save(tmp_path / "ok"), prompt_id="metrics-deploy")
        broken = art("never", "loaded").save(tmp_path / "broken")
        c.register_prompt(broken, prompt_id="metrics-broken")
        c.classify(make_image(33), prompt_id="metrics-deploy")
        c.classify(make_image(34), labels=["sky"])
        c.classify(make_image(34), labels=["sky"])  # a text-cache hit
        for i in range(4):  # more prompts than the replica keeps (max_loaded 2): evictions
            evict = art(f"thing {i}", "other").save(tmp_path / f"e{i}")
            c.register_prompt(evict, prompt_id=f"metrics-evict-{i}")
            c.classify(make_image(35), prompt_id=f"metrics-evict-{i}")
    # stored features that no longer parse: the store quarantines the prompt (404, counted)
    store = Path(server["config"].prompts.store)
    (features,) = list((store / "metrics-broken").rglob("features*"))  # in its version dir
    good = features.read_bytes()
    features.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    body = {"prompt_id": "metrics-broken"}
    files = [("images", ("a.jpg", make_image(36), "image/jpeg"))]
    r = httpx.post(f"{url}/v1/classify", files=files, data=body, timeout=60)
    assert r.status_code == 404 and "corrupt" in r.json()["error"]["message"], r.text
    # features that parse, with the right content id, but do not fit the head: a load failure
    from safetensors.numpy import load, save

    content_id = json.loads(good[8 : 8 + int.from_bytes(good[:8], "little")])["__metadata__"]
    wrong = load(good)["features"][:, :3]  # the wrong width for this backbone
    features.write_bytes(save({"features": wrong.copy()}, metadata=content_id))
    r = httpx.post(f"{url}/v1/classify", files=files, data=body, timeout=60)
    assert r.status_code == 503 and "could not be loaded" in r.text, r.text

    wanted = _used_metric_names() - GPU_ONLY
    assert "ray_promptserve_artifact_load_failures_total" in wanted
    _scrape_until_exported(ray_cluster["metrics_port"], wanted)


def test_retrieval_panels_use_exported_metrics(ray_cluster, tiny_llm_bundle, tmp_path):
    """The Retrieval row and the retrieval alerts query metrics the llm family's app exports
    once documents are indexed and searched."""
    from ray import serve

    from promptserve.models.bundle import Bundle
    from promptserve.models.llm.artifacts import builtin_prompt
    from promptserve.serving.app import build_app

    admin = "deploy-metrics-admin"
    cfg = serve_config(
        tiny_llm_bundle,
        tmp_path / "store",
        index={"path": str(tmp_path / "indexes")},
        # no logical CPUs: the session's CLIP apps and the LLM app (tests/conftest.py) may hold
        # all of the test cluster's 4, depending on which tests ran first
        encoder={"num_cpus": 0.0},
        gateway={"num_cpus": 0.0},
        indexer={"num_cpus": 0.0},
        auth={"admin_keys": [admin], "api_keys_env": None, "admin_keys_env": None},
    )
    serve.run(build_app(cfg), name="llm-metrics", route_prefix="/llm-metrics", blocking=False)
    try:
        with Client(ray_cluster["base_url"] + "/llm-metrics", api_key=admin, timeout=120) as c:
            deadline = time.time() + 120
            while not c.health():
                assert time.time() < deadline, "the llm app never became ready"
                time.sleep(0.5)
            artifact = builtin_prompt("llama3", Bundle(tiny_llm_bundle).backbone_id)
            manifest = json.loads(artifact.manifest.model_dump_json())
            c.register_prompt((manifest, None), prompt_id="reps")
            c.create_index("metrics", prompt_id="reps")
            docs = [{"_id": f"d{i}", "text": f"volcanoes erupt lava number {i}"} for i in range(3)]
            c.index_documents(docs, index_id="metrics")
            c.retrieve(["lava"], index_id="metrics", k=2, mode="hybrid")
        wanted = _used_metric_names(retrieval=True)
        assert "ray_promptserve_index_query_latency_seconds_bucket" in wanted
        _scrape_until_exported(ray_cluster["metrics_port"], wanted)
    finally:
        serve.delete("llm-metrics")
