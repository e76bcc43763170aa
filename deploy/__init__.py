"""Kubernetes and monitoring manifests (KubeRay RayService, Prometheus) rendered from the app config."""
