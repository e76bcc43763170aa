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
from conftest import make_image

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


def _used_metric_names() -> set[str]:
    rules = yaml.safe_load((DEPLOY / "base" / "prometheusrule.yaml").read_text())
    dash = json.loads((DEPLOY / "base" / "grafana-dashboard.json").read_text())
    exprs = [r["expr"] for g in rules["spec"]["groups"] for r in g["rules"]]
    exprs += [t["expr"] for p in dash["panels"] for t in p["targets"]]
    return set(re.findall(r"\b(ray_[a-z0-9_]+)", "\n".join(exprs)))


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
    families: set[str] = set()
    deadline = time.time() + 60
    while time.time() < deadline:  # Ray reports metrics every second in the test cluster
        text = httpx.get(f"http://127.0.0.1:{ray_cluster['metrics_port']}/metrics", timeout=10).text
        families = set(re.findall(r"^(ray_[a-z0-9_]+)", text, re.M))
        if wanted <= families:
            break
        time.sleep(2)
    missing = sorted(wanted - families)
    assert not missing, f"used by deploy/ but not exported: {missing}"
