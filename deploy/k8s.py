"""`promptserve k8s render`: a KubeRay RayService from the application config `promptserve
serve` runs, so the local server and the cluster cannot drift apart.

The app config goes into `serveConfigV2` unchanged except for paths: local paths (relative to
the config file, as `load_config` reads them) become paths under the data volume's mount, and
fsspec URLs (s3://, gs://, ...) stay as they are; state the cluster keeps (the prompt store,
the index engine's files and catalog) goes on the volume. Deployment options (replicas or
autoscaling, concurrency and queue limits, actor resources) come from
`AppConfig.deployment_options`, which `build_app` applies locally.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from promptserve.serving.config import AppConfig

METRICS_PORT = 8080  # Ray's metrics export port on every pod (scraped by the PodMonitor)
SERVE_PORT = 8000
DASHBOARD_PORT = 8265


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Toleration(_Strict):
    key: str
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class PodResources(_Strict):
    cpu: str = "2"
    memory: str = "8Gi"
    gpus: int = Field(0, ge=0, description="nvidia.com/gpu per pod (requests = limits).")

    def k8s(self) -> dict[str, Any]:
        limits: dict[str, Any] = {"cpu": self.cpu, "memory": self.memory}
        if self.gpus:
            limits["nvidia.com/gpu"] = self.gpus
        return {"requests": dict(limits), "limits": limits}


class WorkerGroup(_Strict):
    name: str = "gpu-workers"
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(4, ge=1)
    resources: PodResources = PodResources(cpu="8", memory="32Gi", gpus=1)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(
        default_factory=lambda: [Toleration(key="nvidia.com/gpu", effect="NoSchedule")]
    )
    ray_resources: dict[str, float] = Field(
        default_factory=dict, description="Custom Ray resources the group's nodes advertise."
    )


class TritonSidecar(_Strict):
    """Run the encoders' graphs on a Triton server beside Ray in every worker pod: the pod's
    GPUs go to Triton, the app's encoder switches to the `triton` engine on loopback."""

    image: str = "nvcr.io/nvidia/tritonserver:25.08-py3"
    repository: str | None = Field(
        None,
        description="Model repository (`promptserve export --format triton`): a path on the "
        "data volume or an object-store URL; default <mount_path>/triton-repo.",
    )
    http_port: int = 8100  # Serve's proxy has 8000 in the same pod
    grpc_port: int = 8101
    metrics_port: int = 8102  # nv_inference_* (scraped as `triton-metrics`)
    cpu: str = "4"
    memory: str = "16Gi"
    shared_memory: str | None = Field(
        "2Gi",
        description="Size of a memory-backed /dev/shm both containers mount, through which the "
        "triton engine passes tensors (`shared_memory: system`); None: over the socket.",
    )


class Storage(_Strict):
    """Where bundles and artifacts live in the cluster: a PVC mounted on every pod (local paths
    of the app config are taken relative to it); object-store URLs need no volume."""

    pvc: str | None = "promptserve-data"
    mount_path: str = "/data"
    prompts_store: str | None = Field(
        None, description="Registered prompts in the cluster (default <mount_path>/prompts)."
    )
    indexes: str | None = Field(
        None,
        description="The index engine's directory in the cluster: the embedded engine's files "
        "and the index catalog (<indexes>/catalog), shared by indexer replicas; default "
        "<mount_path>/indexes.",
    )


class SecretKey(_Strict):
    """One entry of a Secret in the app's namespace."""

    name: str
    key: str


class ClusterConfig(_Strict):
    """The Kubernetes side of a deployment; the app side is the `promptserve serve` config."""

    name: str = "promptserve"
    namespace: str = "promptserve"
    image: str = "ghcr.io/promptserve/promptserve:0.1.0-gpu"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    ray_version: str = "2.60.0"
    head: PodResources = PodResources(cpu="2", memory="8Gi")
    head_node_selector: dict[str, str] = Field(default_factory=dict)
    workers: WorkerGroup = WorkerGroup()
    storage: Storage = Storage()
    api_keys_secret: str | None = Field(
        "promptserve-api-keys",
        description="Secret whose `api-keys` entry becomes PROMPTSERVE_API_KEYS (read keys) and "
        "optional `admin-keys` entry PROMPTSERVE_ADMIN_KEYS (admin keys); None = no auth.",
    )
    index_api_key: SecretKey | None = Field(
        SecretKey(name="qdrant-apikey", key="api-key"),
        description="A server index engine's API key (index.engine qdrant): this Secret entry "
        "becomes the variable the app config's index.api_key_env names (QDRANT_API_KEY), "
        "optional, so a Qdrant without a key needs no Secret. The default is the name and key "
        "of the Secret the official Qdrant chart makes (`apiKey: true`), copied to this "
        "namespace; None passes none.",
    )
    idle_timeout_s: int = Field(
        300, ge=0, description="Autoscaler: idle worker pods removed after."
    )
    upgrade: Literal["NewCluster", "NewClusterWithIncrementalUpgrade", "None"] = "NewCluster"
    env: dict[str, str] = Field(default_factory=dict)
    triton: TritonSidecar | None = Field(None, description="A Triton sidecar in worker pods.")
    app_overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Merged into the app config for this cluster only: the hardware "
        "differences (e.g. encoder.num_gpus, engine.providers, autoscaling bounds).",
    )


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


class RenderError(ValueError):
    """The app config cannot run on the cluster as given (e.g. a path off the data volume)."""


def cluster_app_config(
    raw: dict[str, Any], storage: Storage, *, config_dir: Path, data_root: Path
) -> dict[str, Any]:
    """The app config as the cluster runs it: local paths (relative to the config file, as
    `load_config` reads them) mapped from `data_root` onto the data volume's mount, fsspec URLs
    kept, the prompt store on the volume (or the config's URL), the index engine's directory
    and catalog on the volume (local paths only: a laptop's directory means nothing to the
    pods, and indexer replicas must share one catalog), HTTP on all interfaces."""
    config = AppConfig.model_validate(raw)  # the same validation `promptserve serve` applies
    root = Path(os.path.abspath(data_root.expanduser()))  # as written: symlinks not followed

    def on_volume(path: str) -> str:
        if "://" in path:
            return path
        local = Path(os.path.abspath(config_dir / Path(path).expanduser()))
        if not local.is_relative_to(root):
            raise RenderError(
                f"{path} ({local}) is not under the data root {root}: put it there (the data "
                "volume holds the same tree) or pass --data-root"
            )
        return str(PurePosixPath(storage.mount_path) / local.relative_to(root).as_posix())

    data = config.model_dump(mode="json")
    data["bundle"] = on_volume(config.bundle)
    data["prompts"]["preload"] = [on_volume(p) for p in config.prompts.preload]
    if "://" not in config.prompts.store:
        data["prompts"]["store"] = storage.prompts_store or f"{storage.mount_path}/prompts"
    indexes = storage.indexes or f"{storage.mount_path}/indexes"
    data["index"]["path"] = indexes
    data["index"]["catalog"] = f"{indexes}/catalog"
    data["http"] = {"host": "0.0.0.0", "port": SERVE_PORT}
    return data


def _local(path: str, config_dir: Path) -> str:
    """Where the app config's `path` is on this machine (a URL stays a URL)."""
    return path if "://" in path else str(config_dir / Path(path).expanduser())


RETRIEVAL_SECTIONS = ("index", "indexer")


def _services(
    bundle: str, declared: Mapping[str, Any] | None, config: AppConfig | None = None
) -> list[str]:
    """The family's extra deployments (e.g. the LLM family's `indexer`), read from the bundle
    where it is on this machine. Where it is not (a URL, or a bundle that lives only on the
    cluster's volume) the app config as written says: a section the indexer reads (`index`,
    `indexer`) makes it a retrieval app, which runs the indexer; else none. `declared` is
    that config before defaults are filled in (a validated config has every section); a
    `generator` section adds the generator."""
    from promptserve.models.bundle import Bundle, BundleError

    try:
        return list(Bundle(bundle).family.services(config))
    except (BundleError, OSError, ValueError):
        names = []
        if declared is not None and any(s in declared for s in RETRIEVAL_SECTIONS):
            names.append("indexer")
        if declared is not None and declared.get("generator") is not None:
            names.append("generator")
        return names


def serve_config(
    app: dict[str, Any],
    bundle_dir: str | None = None,
    *,
    declared: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """serveConfigV2: one application built by `app_builder` from the inline config, with the
    deployment options `build_app` would use. `declared`: the app config as written, which
    names the family's deployments where the bundle cannot be read here (`_services`)."""
    config = AppConfig.model_validate(app)
    services = _services(bundle_dir or config.bundle, declared, config)
    options = config.deployment_options(services=services)
    deployments = [{"name": n, **opts} for n, opts in options.items()]
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": SERVE_PORT},
        "logging_config": {"log_level": config.log_level},
        "applications": [
            {
                "name": config.name,
                "route_prefix": config.route_prefix,
                "import_path": "promptserve.serving.app:app_builder",
                "args": app,
                "deployments": deployments,
            }
        ],
    }


def _container(
    cluster: ClusterConfig,
    resources: PodResources,
    *,
    head: bool,
    ready_path: str,
    index_key_env: str | None = None,
) -> dict[str, Any]:
    ports = [{"containerPort": METRICS_PORT, "name": "metrics"}]
    if head:
        ports += [
            {"containerPort": 6379, "name": "gcs-server"},
            {"containerPort": DASHBOARD_PORT, "name": "dashboard"},
            {"containerPort": 10001, "name": "client"},
            {"containerPort": SERVE_PORT, "name": "serve"},
        ]
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(cluster.env.items())]
    env.append({"name": "RAY_USAGE_STATS_ENABLED", "value": "0"})
    if cluster.api_keys_secret:
        env.append(
            {
                "name": "PROMPTSERVE_API_KEYS",
                "valueFrom": {"secretKeyRef": {"name": cluster.api_keys_secret, "key": "api-keys"}},
            }
        )
        env.append(
            {
                "name": "PROMPTSERVE_ADMIN_KEYS",
                "valueFrom": {
                    "secretKeyRef": {
                        "name": cluster.api_keys_secret,
                        "key": "admin-keys",
                        "optional": True,
                    }
                },
            }
        )
    if index_key_env and cluster.index_api_key:  # read by the indexer replicas (qdrant engine)
        ref = cluster.index_api_key
        env.append(
            {
                "name": index_key_env,
                "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key, "optional": True}},
            }
        )
    container: dict[str, Any] = {
        "name": "ray-head" if head else "ray-worker",
        "image": cluster.image,
        "imagePullPolicy": cluster.image_pull_policy,
        "ports": ports,
        "env": env,
        "resources": resources.k8s(),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        # Ray's own preStop: leave the cluster before the pod goes
        "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", "ray stop"]}}},
        # ready once the app answers /readyz through this pod's Serve proxy (prompts preloaded)
        "readinessProbe": {
            "httpGet": {"path": ready_path, "port": SERVE_PORT},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
    }
    if cluster.storage.pvc:
        container["volumeMounts"] = [{"name": "data", "mountPath": cluster.storage.mount_path}]
    return container


def _triton_container(cluster: ClusterConfig, gpus: int) -> dict[str, Any]:
    t = cluster.triton
    assert t is not None
    repo = t.repository or f"{cluster.storage.mount_path}/triton-repo"
    limits: dict[str, Any] = {"cpu": t.cpu, "memory": t.memory}
    if gpus:
        limits["nvidia.com/gpu"] = gpus
    container: dict[str, Any] = {
        "name": "triton",
        "image": t.image,
        "imagePullPolicy": cluster.image_pull_policy,
        "args": [
            "tritonserver",
            f"--model-repository={repo}",
            f"--http-port={t.http_port}",
            f"--grpc-port={t.grpc_port}",
            f"--metrics-port={t.metrics_port}",
        ],
        "ports": [
            {"containerPort": t.http_port, "name": "triton-http"},
            {"containerPort": t.grpc_port, "name": "triton-grpc"},
            {"containerPort": t.metrics_port, "name": "triton-metrics"},
        ],
        "resources": {"requests": dict(limits), "limits": limits},
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": t.http_port},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if cluster.storage.pvc:
        container["volumeMounts"] = [{"name": "data", "mountPath": cluster.storage.mount_path}]
    return container


def _pod(cluster: ClusterConfig, container: dict[str, Any], selector: dict[str, str],
         tolerations: list[Toleration], sidecars: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:  # fmt: skip
    spec: dict[str, Any] = {
        "containers": [container, *sidecars],
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000},
    }
    if selector:
        spec["nodeSelector"] = dict(selector)
    if tolerations:
        spec["tolerations"] = [t.model_dump(exclude_none=True) for t in tolerations]
    if cluster.storage.pvc:
        spec["volumes"] = [
            {"name": "data", "persistentVolumeClaim": {"claimName": cluster.storage.pvc}}
        ]
    # the label the PodMonitor selects (deploy/base/podmonitor.yaml)
    labels = {"app.kubernetes.io/name": "promptserve", "app.kubernetes.io/instance": cluster.name}
    return {"metadata": {"labels": labels}, "spec": spec}


def _shared_dev_shm(cluster: ClusterConfig, pod: dict[str, Any]) -> dict[str, Any]:
    """One memory-backed /dev/shm for every container of a worker pod with a Triton sidecar,
    so the encoder's shared-memory regions are visible to Triton."""
    if cluster.triton is None or not cluster.triton.shared_memory:
        return pod
    spec = pod["spec"]
    spec.setdefault("volumes", []).append(
        {
            "name": "dshm",
            "emptyDir": {"medium": "Memory", "sizeLimit": cluster.triton.shared_memory},
        }
    )
    for container in spec["containers"]:
        container.setdefault("volumeMounts", []).append({"name": "dshm", "mountPath": "/dev/shm"})
    return pod


def render_rayservice(
    raw_app: dict[str, Any], cluster: ClusterConfig, *, config_dir: Path, data_root: Path
) -> dict[str, Any]:
    """The RayService manifest (ray.io/v1) for an app config (as read from YAML, unresolved)
    and the cluster settings."""
    overrides = cluster.app_overrides
    if cluster.triton is not None:  # the encoders call the sidecar; its container has the GPUs
        triton = {"url": f"127.0.0.1:{cluster.triton.grpc_port}", "protocol": "grpc"}
        if cluster.triton.shared_memory:
            triton["shared_memory"] = "system"
        overrides = _merge(
            overrides, {"engine": {"name": "triton", "triton": triton}, "encoder": {"num_gpus": 0}}
        )
    declared = _merge(raw_app, overrides)
    app = cluster_app_config(declared, cluster.storage, config_dir=config_dir, data_root=data_root)
    auth = app["auth"]
    if (
        auth["enabled"]
        and not cluster.api_keys_secret
        and not (auth["api_keys"] or auth["admin_keys"])
    ):
        raise RenderError(
            "the app config asks for API keys (auth.enabled) but this cluster gets none "
            "(api_keys_secret: null, no inline keys): the app would refuse to start. Name a "
            "Secret in api_keys_secret, or set app_overrides: {auth: {enabled: false}} for a "
            "cluster that serves without authentication"
        )
    w = cluster.workers
    ready = app["route_prefix"].rstrip("/") + "/readyz"
    index = AppConfig.model_validate(app).index
    key_env = None if index.embedded else index.api_key_env  # a server engine's API key
    worker_resources, sidecars = w.resources, []
    if cluster.triton is not None:
        sidecars = [_triton_container(cluster, w.resources.gpus)]
        worker_resources = w.resources.model_copy(update={"gpus": 0})
    worker_params: dict[str, Any] = {"metrics-export-port": str(METRICS_PORT)}
    if w.ray_resources:
        worker_params["resources"] = yaml.safe_dump(
            w.ray_resources, default_flow_style=True
        ).strip()
    head_params = {
        "dashboard-host": "0.0.0.0",
        "metrics-export-port": str(METRICS_PORT),
        "num-cpus": "0",  # the head schedules no replicas: it keeps GCS and the controller
    }
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {
            "name": cluster.name,
            "namespace": cluster.namespace,
            "labels": {"app.kubernetes.io/name": "promptserve", "app.kubernetes.io/instance": cluster.name},
        },
        "spec": {
            "upgradeStrategy": {"type": cluster.upgrade},
            "serveConfigV2": yaml.safe_dump(
                serve_config(app, bundle_dir=_local(raw_app.get("bundle", ""), config_dir),
                             declared=declared),
                sort_keys=False,
            ),
            "rayClusterConfig": {
                "rayVersion": cluster.ray_version,
                "enableInTreeAutoscaling": True,
                "autoscalerOptions": {
                    "upscalingMode": "Default",
                    "idleTimeoutSeconds": cluster.idle_timeout_s,
                    "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
                },
                "headGroupSpec": {
                    "rayStartParams": head_params,
                    "template": _pod(
                        cluster,
                        _container(cluster, cluster.head, head=True, ready_path=ready,
                                   index_key_env=key_env),
                        cluster.head_node_selector,
                        [],
                    ),
                },
                "workerGroupSpecs": [
                    {
                        "groupName": w.name,
                        "replicas": w.min_replicas,
                        "minReplicas": w.min_replicas,
                        "maxReplicas": w.max_replicas,
                        "rayStartParams": worker_params,
                        "template": _shared_dev_shm(
                            cluster,
                            _pod(
                                cluster,
                                _container(cluster, worker_resources, head=False, ready_path=ready,
                                           index_key_env=key_env),
                                w.node_selector,
                                w.tolerations,
                                sidecars,
                            ),
                        ),
                    }
                ],
            },
        },
    }  # fmt: skip


def render(
    app_config: str | Path,
    cluster_config: str | Path | None = None,
    *,
    data_root: str | Path | None = None,
) -> dict[str, Any]:
    """`data_root`: the local directory the data volume mirrors (default: the app config's
    directory)."""
    app_config = Path(app_config)
    raw = yaml.safe_load(app_config.read_text()) or {}
    cluster = ClusterConfig.model_validate(
        (yaml.safe_load(Path(cluster_config).read_text()) or {}) if cluster_config else {}
    )
    config_dir = Path(os.path.abspath(app_config)).parent
    root = Path(data_root) if data_root is not None else config_dir
    return render_rayservice(raw, cluster, config_dir=config_dir, data_root=root)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (serveConfigV2) as literal blocks, readable in the manifest."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def dump(manifest: dict[str, Any]) -> str:
    header = (
        "# Generated by `promptserve k8s render`; edit the app/cluster configs, not this file.\n"
    )
    return header + yaml.dump(manifest, Dumper=_Dumper, sort_keys=False, width=100)
