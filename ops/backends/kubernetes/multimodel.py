"""Multi-model endpoints on Kubernetes (decision 68): a ConfigMap holding the catalog, one
Deployment of model servers started on it (``--catalog``), and a Service in front.

Every pod loads models on demand within the catalog's budget, so the container's memory
limit is the budget plus ``MEMORY_HEADROOM`` (the interpreter, libraries and request
buffers) unless the operator's ``resources`` say otherwise. A catalog change updates the
ConfigMap in place and the servers reload it (the kubelet refreshes the mounted file within
about a minute); only a new budget rolls the pods. The Service carries the catalog's
generation and digest, written last: ``apply_catalog`` refuses an older catalog from them
(the same fence as plans, decision 51) and patches with the ``resourceVersion`` it read.
Each object is validated (kubernetes-validate, strict) before anything is sent.
"""

from __future__ import annotations

import copy
import hashlib

from ops.backends.base import BackendError
from ops.backends.kubernetes.client import KubeClient, api_client
from ops.backends.kubernetes.manifests import ManifestBuilder
from ops.backends.kubernetes.names import (
    CHECKSUM_ANNOTATION,
    ENDPOINT_ANNOTATION,
    GENERATION_ANNOTATION,
    PLAN_DIGEST_ANNOTATION,
    PLAN_DIR,
    PORT,
    owned_name,
)
from ops.backends.kubernetes.validation import ManifestValidator
from ops.backends.multimodel import (
    MultiModelBackend,
    MultiModelState,
    catalog_digest,
    check_catalog_generation,
)
from ops.serving.multimodel import Catalog

CATALOG_KEY = "catalog.json"
MEMORY_HEADROOM = 512 * 1024 * 1024


def _mebibytes(size: int) -> str:
    return f"{-(-size // (1024 * 1024))}Mi"


class KubernetesMultiModel(MultiModelBackend):
    """Settings as ``KubernetesBackend``'s (namespace, image, resources, env, connection,
    validation, owner) plus ``replicas``; the mode setting does not apply (no KServe)."""

    def __init__(self, namespace: str = "default", image: str | None = None,
                 service_account: str | None = None, resources: dict | None = None,
                 kubeconfig: str | None = None, context: str | None = None,
                 in_cluster: bool = False, host: str | None = None, verify_ssl: bool = True,
                 timeout: float = 10, env: dict | None = None, validate: bool = True,
                 kubernetes_version: str = "1.30", retries: int = 1,
                 owner: str | None = None, replicas: int = 1,
                 monitoring_labels: dict | None = None, **extra):
        if not image:
            raise BackendError("the kubernetes backend needs the model-server image "
                               "(setting 'image')")
        self.namespace = namespace
        self.owner = owner
        self.replicas = max(1, int(replicas))
        self.resources = resources
        self.builder = ManifestBuilder(namespace, image, service_account, resources,
                                       {str(k): str(v) for k, v in (env or {}).items()},
                                       None, owner, monitoring_labels=monitoring_labels)
        self.validator = ManifestValidator(validate, kubernetes_version)
        self._api = api_client(kubeconfig, context, in_cluster, host, verify_ssl, retries)
        self._client = KubeClient(self._api, namespace, timeout, owner)

    def name(self, endpoint: str) -> str:
        return owned_name(endpoint, self.owner)

    # -- rendering (no cluster) -----------------------------------------------------------------

    def render(self, catalog: Catalog) -> list[dict]:
        """The ConfigMap, Deployment and Service of ``catalog``, validated, in apply order."""
        name = self.name(catalog.endpoint)
        text = catalog.to_json()
        config_map = self.builder.plan_config_map(f"{name}-catalog", name, catalog.endpoint,
                                                  {CATALOG_KEY: text})
        manifests = [config_map, self._deployment(catalog, name),
                     self._service(catalog, name)]
        for manifest in manifests:
            self.validator(manifest)
        return manifests

    def _resources(self, catalog: Catalog) -> dict:
        if self.resources:
            return copy.deepcopy(self.resources)
        memory = _mebibytes(catalog.memory_budget + MEMORY_HEADROOM)
        return {"requests": {"memory": memory}, "limits": {"memory": memory}}

    def _deployment(self, catalog: Catalog, name: str) -> dict:
        labels = {"app": name, **self.builder.labels(name)}
        container = self.builder.container("model-server", catalog.endpoint, "http")
        container["args"] = ["--catalog", f"{PLAN_DIR}/{CATALOG_KEY}", "--host", "0.0.0.0",
                             "--port", str(PORT)]
        container["ports"] = [{"name": "http", "containerPort": PORT, "protocol": "TCP"}]
        container["livenessProbe"] = {"httpGet": {"path": "/v2/health/live", "port": "http"}}
        container["volumeMounts"] = [{"name": "catalog", "mountPath": PLAN_DIR,
                                      "readOnly": True}]
        container["resources"] = self._resources(catalog)
        # Only the budget rolls the pods: members change in the mounted file, reloaded.
        rolled_by = hashlib.sha256(str(catalog.memory_budget).encode()).hexdigest()[:16]
        return {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": self.namespace, "labels": labels,
                         "annotations": {ENDPOINT_ANNOTATION: catalog.endpoint}},
            "spec": {
                "replicas": self.replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": labels, "annotations": self.builder.pod_annotations(
                        **{CHECKSUM_ANNOTATION: rolled_by})},
                    "spec": {
                        "serviceAccountName": self.builder.service_account,
                        "containers": [container],
                        "volumes": [{"name": "catalog", "configMap": {
                            "name": f"{name}-catalog",
                            "items": [{"key": CATALOG_KEY, "path": CATALOG_KEY}]}}],
                    },
                },
            },
        }

    def _service(self, catalog: Catalog, name: str) -> dict:
        return {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": self.namespace,
                         "labels": self.builder.labels(name),
                         "annotations": {ENDPOINT_ANNOTATION: catalog.endpoint,
                                         GENERATION_ANNOTATION: str(catalog.generation),
                                         PLAN_DIGEST_ANNOTATION: catalog_digest(catalog)}},
            "spec": {"selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http",
                                "protocol": "TCP"}]},
        }

    # -- the contract -------------------------------------------------------------------------

    def apply_catalog(self, catalog: Catalog, *, wait: bool = True) -> MultiModelState:
        """Converge the three objects; never waits for pods (as the plan backend)."""
        config_map, deployment, service = self.render(catalog)
        name = self.name(catalog.endpoint)
        existing = self._client.read("Service", name)
        annotations = ((existing or {}).get("metadata") or {}).get("annotations") or {}
        self._client.check_owner(existing, f"Service {name}")
        recorded = annotations.get(GENERATION_ANNOTATION)
        check_catalog_generation(catalog, int(recorded) if recorded else None,
                                 annotations.get(PLAN_DIGEST_ANNOTATION), "its Service")
        self._client.converge(config_map, self._client.read("ConfigMap", f"{name}-catalog"))
        self._client.converge(deployment, self._client.read("Deployment", name))
        self._client.converge(service, existing, guarded=existing is not None)
        return self.observe_catalog(catalog.endpoint)

    def observe_catalog(self, endpoint: str) -> MultiModelState:
        name = self.name(endpoint)
        service = self._client.read("Service", name)
        if service is None or self._client.foreign(service):
            return MultiModelState(endpoint, exists=False)
        annotations = service["metadata"].get("annotations") or {}
        recorded = annotations.get(GENERATION_ANNOTATION)
        deployment = self._client.read("Deployment", name) or {}
        ready = int((deployment.get("status") or {}).get("readyReplicas") or 0)
        return MultiModelState(
            endpoint, exists=True, ready=ready >= 1,
            generation=int(recorded) if recorded else None,
            url=f"http://{name}.{self.namespace}.svc",
            detail="" if ready else "no model-server pod is ready yet")

    def delete_catalog(self, endpoint: str) -> None:
        name = self.name(endpoint)
        service = self._client.read("Service", name)
        if service is not None and self._client.foreign(service):
            raise BackendError(f"endpoint {endpoint} belongs to another environment; "
                               "refusing to delete it")
        for kind, object_name in (("Service", name), ("Deployment", name),
                                  ("ConfigMap", f"{name}-catalog")):
            self._client.delete(kind, object_name)
