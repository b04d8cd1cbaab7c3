"""The Kubernetes backend: a KServe InferenceService, or plain Deployments behind a Service.

Every pod runs the model-server image (``python -m ops.serving --plan
/etc/modelgate/plan.json``) and reads a serving plan from a ConfigMap mounted at
``/etc/modelgate``. Each pod serves exactly one variant: traffic between variants is split
by the platform (KServe/Knative revisions, or kube-proxy over replicas), never twice.
Neither mode can honour ``sticky`` (per-unit) assignment: the platform splits per
request/connection.

``KubernetesBackend`` is the facade; it chooses its mode once, when it is built:

* ``kserve`` (the default, ``kserve.py``): one InferenceService, canary by
  ``canaryTrafficPercent``;
* ``deployments`` (``deployments.py``): a Deployment per variant behind one Service, traffic
  by replica counts.

Both build their objects with ``manifests.py`` (plan to manifests), named by ``names.py``,
checked by ``validation.py`` before anything is sent, and sent through ``client.py`` (the
API at arm's length: create-or-merge-patch of only what differs, errors translated to
``BackendError``/``BackendUnavailable``, other owners' objects never touched). Every apply
is fenced by the generation recorded on the mode's main object, written last with
optimistic concurrency (``mode.py``).
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from ops.backends.base import Backend, BackendError, BackendUnavailable, ObservedState
from ops.backends.kubernetes.client import PROXY_ERRORS, KubeClient, api_client
from ops.backends.kubernetes.deployments import DeploymentsMode
from ops.backends.kubernetes.kserve import KServeMode
from ops.backends.kubernetes.manifests import (
    CONFIGMAP_MAX_BYTES,
    ManifestBuilder,
    fingerprint,
    single_variant_plan,
    split_replicas,
    target_replicas,
)
from ops.backends.kubernetes.mode import Mode
from ops.backends.kubernetes.names import (
    KSERVE_GROUP,
    KSERVE_PLURAL,
    KSERVE_VERSION,
    NAME_MAX,
    PORT,
    VARIANT_MAX,
    dns_label,
    owned_name,
    resource_name,
    variant_label,
)
from ops.backends.kubernetes.validation import (
    ManifestValidator,
    inference_service_schema,
    inference_service_validator,
    validate_core_manifest,
    validate_inference_service,
)
from ops.plan import ServingPlan

__all__ = [
    "CONFIGMAP_MAX_BYTES", "KSERVE_GROUP", "KSERVE_PLURAL", "KSERVE_VERSION", "MODES",
    "NAME_MAX", "VARIANT_MAX", "DeploymentsMode", "KServeMode", "KubernetesBackend",
    "dns_label", "fingerprint", "inference_service_schema", "inference_service_validator",
    "resource_name", "single_variant_plan", "split_replicas", "target_replicas",
    "validate_core_manifest", "validate_inference_service", "variant_label",
]

log = logging.getLogger(__name__)

MODES = ("kserve", "deployments")


class KubernetesBackend(Backend):
    """Converges an endpoint on a cluster in one mode (``kserve`` or ``deployments``), the
    mode's object chosen when the backend is built."""

    kind = "kubernetes"

    PROJECT_SETTINGS = {"type": "object", "properties": {
        # Replicas and resources are the operator's (the cluster's capacity), not a project's.
        "namespace": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"},
        "env": {"type": "object", "maxProperties": 10,
                "propertyNames": {"enum": ["MODELGATE_THREADS", "MODELGATE_MAX_BATCH",
                                           "MODELGATE_BATCH_TIMEOUT_MS",
                                           "MODELGATE_BATCH_IDLE_ROUNDS",
                                           "MODELGATE_BATCH_INLINE_US", "MODELGATE_MAX_QUEUE",
                                           "MODELGATE_LOG_LEVEL", "MODELGATE_FAST_TREES",
                                           "MODELGATE_FAST_TREES_TOLERANCE",
                                           "MODELGATE_FAST_TREES_THREADS"]},
                "additionalProperties": {"type": "string", "maxLength": 32}},
    }}

    def __init__(self, namespace: str = "default", image: str | None = None,
                 mode: str = "kserve", service_account: str | None = None,
                 resources: dict | None = None, kubeconfig: str | None = None,
                 context: str | None = None, in_cluster: bool = False, host: str | None = None,
                 verify_ssl: bool = True, timeout: float = 10, total_replicas: int | None = None,
                 env: dict | None = None, validate: bool = True,
                 kubernetes_version: str = "1.30", crd_schema: str | None = None,
                 retries: int = 1, prediction_key: str | None = None,
                 owner: str | None = None, monitoring_labels: dict | None = None,
                 **extra):
        """Settings come from an environment's JSON settings; credentials never do.

        ``host`` talks to that API URL without credentials (``kubectl proxy``, tests);
        ``in_cluster`` uses the pod's service account; otherwise ``kubeconfig`` (default
        ``~/.kube/config`` or ``$KUBECONFIG``) and ``context``. ``resources`` is a container
        ``{"requests": {...}, "limits": {...}}``; ``env`` extra environment variables of
        the model server (e.g. ``MODELGATE_THREADS``); ``total_replicas`` the replica
        budget of deployments mode; ``crd_schema`` the path of KServe's InferenceService
        CRD YAML to validate against; ``retries`` how often the HTTP client retries a
        failed connection before ``BackendUnavailable``; ``prediction_key`` (given by the
        portal, never a stored setting) the key model servers sign prediction ids with,
        kept in a Secret the pods read it from; ``owner`` (given by the portal) labels every
        object, and an object labelled for another owner is never patched or deleted (two
        projects' endpoints of one name in one namespace); ``monitoring_labels`` (given by
        the portal: ``project`` and ``environment``) are annotated on the model pods for a
        Prometheus to label their series with. Unknown settings are kept in ``extra`` and
        otherwise ignored.
        """
        if mode not in MODES:
            raise BackendError(f"unknown kubernetes mode {mode!r}; valid modes: "
                               + ", ".join(MODES))
        if not image:
            raise BackendError("the kubernetes backend needs the model-server image "
                               "(setting 'image')")
        if resources is not None and not isinstance(resources, dict):
            raise BackendError("'resources' must be a mapping with 'requests' and/or 'limits'")
        if total_replicas is not None and int(total_replicas) < 1:
            raise BackendError("'total_replicas' must be at least 1")
        self.namespace = namespace
        self.image = image
        self.mode = mode
        self.service_account = service_account
        self.resources = resources
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self.prediction_key = prediction_key
        self.owner = owner
        self.total_replicas = int(total_replicas) if total_replicas is not None else None
        self.timeout = timeout
        self.validate = validate
        self.kubernetes_version = kubernetes_version
        self.crd_schema = crd_schema
        self.extra = extra
        self.api = api_client(kubeconfig, context, in_cluster, host, verify_ssl, retries)
        self._client = KubeClient(self.api, namespace, timeout, owner)
        manifests = ManifestBuilder(namespace, image, service_account, resources, self.env,
                                    prediction_key, owner,
                                    namer=lambda endpoint: self._name(endpoint),
                                    monitoring_labels=monitoring_labels)
        validator = ManifestValidator(validate, kubernetes_version, crd_schema)
        self._mode: Mode = (
            DeploymentsMode(self._client, manifests, validator, self.total_replicas)
            if mode == "deployments" else KServeMode(self._client, manifests, validator))

    def _name(self, endpoint: str) -> str:
        """The name of the endpoint's objects, in every mode: the endpoint and its owner, so
        two projects' models of one name in one namespace never share an object."""
        return owned_name(endpoint, self.owner)

    def _key_secret_name(self, endpoint: str) -> str:
        return self._mode.manifests.key_secret_name(endpoint)

    # -- the contract --------------------------------------------------------------------------

    def apply(self, plan: ServingPlan, *, wait: bool = True) -> ObservedState:
        """Converge the cluster's objects to ``plan`` (fenced by generation: ``mode.py``)
        and return what they say. Never waits for pods, whatever ``wait`` says: the cluster
        converges on its own, and ``observe`` reports readiness."""
        self._mode.apply(plan)
        return self.observe(plan.endpoint)

    def observe(self, endpoint: str) -> ObservedState:
        return self._mode.observe(endpoint)

    def delete(self, endpoint: str) -> None:
        """Remove what this mode creates for ``endpoint``; what is gone already is fine."""
        self._mode.delete(endpoint)

    # -- blue/green's check: requests straight to one variant's pods -------------------------

    def smoke(self, endpoint: str, variant: str, rows: list[list[float]], count: int) -> int:
        """Sends ``count`` requests to the ready pods of one variant through the API
        server's pod proxy (``pods/<pod>:8080/proxy/...``), so the portal needs no route
        into the cluster network. Deployments mode finds the pods by their variant label;
        KServe mode by the Knative revision the variant runs as (the InferenceService's
        ``latestCreatedRevision`` for the newest predictor, ``latestRolledoutRevision``
        for the one still holding the rest of the traffic). Returns how many succeeded;
        no ready pod means 0 (the check stays inconclusive)."""
        try:
            pods = self._ready_pods(endpoint, variant)
        except (BackendError, BackendUnavailable) as e:
            log.info("smoke check of %s/%s: cannot list pods: %s", endpoint, variant, e)
            return 0
        if not pods:
            log.info("smoke check of %s/%s: no ready pod", endpoint, variant)
            return 0
        path = f"/v2/models/{quote(endpoint, safe='')}/infer"
        succeeded = 0
        for i in range(count):
            pod = pods[i % len(pods)]
            try:
                status = self._client.post_to_pod(pod, PORT, path, {"instances": rows})
                succeeded += 200 <= status < 300
            except PROXY_ERRORS as e:
                log.info("smoke request to %s/%s (pod %s) failed: %s", endpoint, variant, pod, e)
        return succeeded

    def _ready_pods(self, endpoint: str, variant: str) -> list[str]:
        wanted = self._mode.pod_labels(endpoint, variant)
        return self._client.ready_pods(wanted) if wanted else []
