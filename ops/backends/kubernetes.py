"""The Kubernetes backend: a KServe InferenceService, or plain Deployments behind a Service.

Every pod runs the model-server image (``python -m ops.serving --plan
/etc/modelgate/plan.json``) and reads a serving plan from a ConfigMap mounted at
``/etc/modelgate``. Each pod serves exactly one variant: traffic between variants is split
by the platform (KServe/Knative revisions, or kube-proxy over replicas), never twice.

Names. Kubernetes objects are named after the endpoint, sanitised to a DNS-1035 label of at
most 45 characters (Knative names the predictor revision ``<name>-predictor-00001``, which
must stay within 63): a valid short name is used unchanged; any other is lower-cased, every
run of characters outside ``[a-z0-9]`` becomes ``-``, ``mg-`` is put in front when it would
not start with a letter, it is cut to 36 characters and gets ``-`` plus the first 8 hex
digits of the sha256 of the original name, so two endpoints never share objects. Variant
names get the same treatment with 16 characters (``stable`` and ``candidate`` are kept).
The original names are kept in annotations.

Mode ``kserve`` (the default): one ``serving.kserve.io/v1beta1`` InferenceService. KServe
holds ONE predictor spec and splits traffic with ``spec.predictor.canaryTrafficPercent``
between the latest revision and the last rolled-out one, so:

* one live variant: the predictor runs it, no ``canaryTrafficPercent`` (all traffic to the
  latest revision once ready). Rollback and the end of a promote are this case.
* two live variants: one must be the variant the InferenceService already serves (its
  rolled-out revision, the "stable"); the other becomes the predictor (the canary) with
  ``canaryTrafficPercent = round(weight * 100)``. A weight of 0 deploys the candidate
  without traffic (blue/green check). A plan whose stable is not already served is
  refused: KServe has no revision to send the stable share to.
* more live variants, or a shadow, cannot be expressed: ``BackendError``.

The plan reaches a revision through a ConfigMap ``<name>-plan-<generation>`` (the
generation that introduced that predictor) holding a one-variant plan. A new predictor
(another version, artifact, schema or replica count) gets a new ConfigMap, which changes
the pod template and so makes a new revision; a weight-only change or a renamed variant
reuses the ConfigMap (its content is updated in place, the server hot-reloads it) and makes
no revision. ConfigMaps no longer referenced by the predictor or the stable revision are
deleted. What was applied is recorded in annotations (``modelgate.io/generation`` and
``modelgate.io/variants``: names, version ids, effective weights, roles, ConfigMaps), so
``observe`` reports the desired split from the object alone. Readiness comes from
``status.conditions[type=Ready]`` being ``True`` for the current ``metadata.generation``;
an object without status (no controller has reconciled it yet) is reported not ready. Canary
needs KServe's Serverless (Knative) deployment mode.

Mode ``deployments`` (clusters without KServe): one Deployment ``<name>-<variant>`` per
live variant, labelled ``app=<name>`` and ``modelgate.io/variant=<variant>``, all behind one
Service ``<name>`` selecting ``app=<name>``; one ConfigMap ``<name>-plan`` holds a plan per
variant (the shadow, if any, is carried inside every live variant's plan: each pod mirrors
its requests to it). Traffic follows replica counts: the total is the ``total_replicas``
setting, or else the traffic-weighted mean of the variants' ``replicas`` rounded up; it is
apportioned by largest remainder (ties to the earlier variant), then every variant with a
weight above 0 gets at least 1 replica (so the total may exceed the target by the number
of variants raised). A live variant with weight 0 (blue/green's idle candidate, the stable
kept warm after the switch) keeps its own ``replicas`` and the Service then selects only
the variant with traffic, so the switch is a selector change onto warm pods; ``smoke``
reaches an idle variant's pods through the API server's pod proxy. Deployments of variants that left the plan
are deleted. Readiness comes from each Deployment's status (``readyReplicas`` and
``updatedReplicas`` covering ``spec.replicas`` for the current generation). Neither mode
can honour ``sticky`` (per-unit) assignment: the platform splits per request/connection.

Writes are create-or-merge-patch of only what differs from the object read (applying the
same plan twice writes nothing). Every manifest is validated before anything is sent when
``validate`` is on (the default; a few milliseconds per object, and it keeps a bad setting
from half-applying a plan): core objects with ``kubernetes-validate`` in strict mode, the
InferenceService against KServe's CRD schema when ``crd_schema`` names its YAML file.
Errors from the client never cross the boundary: ``BackendUnavailable`` for what may pass
(connection errors, timeouts, 5xx, 429, write conflicts), ``BackendError`` otherwise.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException, OpenApiException
from kubernetes.config.config_exception import ConfigException

from ops.backends.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    ObservedState,
    ObservedVariant,
)
from ops.plan import ServingPlan, Variant
from ops.serving.ids import KEY_ENV as PREDICTION_KEY_ENV

log = logging.getLogger(__name__)

MODES = ("kserve", "deployments")
KSERVE_GROUP, KSERVE_VERSION, KSERVE_PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"

NAME_MAX = 45
VARIANT_MAX = 16
PLAN_DIR = "/etc/modelgate"
PLAN_KEY = "plan.json"
PORT = 8080
CONFIGMAP_MAX_BYTES = 1_000_000  # the API server refuses ConfigMaps over 1 MiB

MANAGED_BY = "app.kubernetes.io/managed-by"
OWNER_LABEL = "modelgate.io/owner"  # the environment an endpoint's objects belong to
ENDPOINT_LABEL = "modelgate.io/endpoint"
VARIANT_LABEL = "modelgate.io/variant"
ENDPOINT_ANNOTATION = "modelgate.io/endpoint-name"
GENERATION_ANNOTATION = "modelgate.io/generation"
VARIANTS_ANNOTATION = "modelgate.io/variants"
SHADOW_ANNOTATION = "modelgate.io/shadow"
FINGERPRINT_ANNOTATION = "modelgate.io/fingerprint"
CHECKSUM_ANNOTATION = "modelgate.io/plan-checksum"

MERGE_PATCH = "application/merge-patch+json"
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


# -- names --------------------------------------------------------------------------------


def dns_label(text: str, max_length: int) -> str:
    """``text`` as a DNS-1035 label of at most ``max_length`` characters (see module doc)."""
    if len(text) <= max_length and _DNS_LABEL.fullmatch(text):
        return text
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not cleaned[:1].isalpha():
        cleaned = f"mg-{cleaned}".rstrip("-")
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{cleaned[:max_length - 9].rstrip('-')}-{digest}"


def resource_name(endpoint: str) -> str:
    """The name of the Kubernetes objects of ``endpoint``."""
    if not endpoint:
        raise BackendError("an endpoint needs a name")
    return dns_label(endpoint, NAME_MAX)


def variant_label(variant: str) -> str:
    return dns_label(variant, VARIANT_MAX)


# -- plans and replicas ---------------------------------------------------------------------


def fingerprint(variant: Variant) -> str:
    """What makes a pod differ: everything but the variant's name and traffic weight."""
    fields = {k: v for k, v in asdict(variant).items() if k not in ("name", "weight")}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def single_variant_plan(plan: ServingPlan, variant: Variant) -> ServingPlan:
    """The plan one pod serves: ``variant`` alone (plus the plan's shadow, if any)."""
    variants = [replace(variant, weight=1.0)]
    if plan.shadow and plan.shadow != variant.name:
        variants.append(plan.variant(plan.shadow))
    return ServingPlan(plan.endpoint, tuple(variants), generation=plan.generation,
                       shadow=plan.shadow if len(variants) > 1 else None)


def split_replicas(weights: dict[str, float], total: int) -> dict[str, int]:
    """Replicas per variant for traffic ``weights`` (summing to 1), ``total`` in all.

    Largest remainder, ties to the earlier variant; then at least 1 replica for every
    variant with a weight above 0 (so the sum may exceed ``total``), 0 for a weight of 0.
    """
    names = list(weights)
    exact = {n: round(total * weights[n], 9) for n in names}
    counts = {n: math.floor(exact[n]) for n in names}
    left = total - sum(counts.values())
    for n in sorted(names, key=lambda n: (counts[n] - exact[n], names.index(n)))[:max(left, 0)]:
        counts[n] += 1
    return {n: (max(counts[n], 1) if weights[n] > 0 else 0) for n in names}


def target_replicas(variants: list[Variant], weights: dict[str, float]) -> int:
    """The traffic-weighted mean of the variants' own replica counts, rounded up."""
    return max(1, math.ceil(round(sum(weights[v.name] * v.replicas for v in variants), 9)))


# -- manifest comparison --------------------------------------------------------------------


def _contains(actual: Any, desired: Any) -> bool:
    """Whether ``actual`` (read from the cluster) already holds everything in ``desired``.

    Keys the cluster added (defaults, status, metadata) are ignored; a ``None`` in
    ``desired`` means the key must be absent (or empty, as the API server defaults some,
    e.g. a container's ``resources: {}``); lists must match element by element.
    """
    if desired is None:
        return actual is None or actual == {} or actual == []
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(
            _contains(actual.get(k), v) for k, v in desired.items())
    if isinstance(desired, list):
        return (isinstance(actual, list) and len(actual) == len(desired)
                and all(_contains(a, d) for a, d in zip(actual, desired, strict=True)))
    return type(actual) is type(desired) and actual == desired


def _without_nones(manifest: Any) -> Any:
    """``manifest`` without the ``None`` markers (keys a merge patch must remove)."""
    if isinstance(manifest, dict):
        return {k: _without_nones(v) for k, v in manifest.items() if v is not None}
    if isinstance(manifest, list):
        return [_without_nones(v) for v in manifest]
    return manifest


def _merge_patch_body(manifest: Any) -> Any:
    """The merge patch converging an object to ``manifest``: ``None`` removes a key, but a
    list is replaced whole, so the markers inside lists are dropped (RFC 7386)."""
    if isinstance(manifest, dict):
        return {k: _merge_patch_body(v) for k, v in manifest.items()}
    if isinstance(manifest, list):
        return _without_nones(manifest)
    return manifest


# -- validation -----------------------------------------------------------------------------


def validate_core_manifest(manifest: dict, kubernetes_version: str = "1.30") -> None:
    """Raise ``BackendError`` unless ``manifest`` is a valid core object (strict schema)."""
    import kubernetes_validate
    from kubernetes_validate.utils import VersionNotSupportedError

    what = f"{manifest.get('kind')} {manifest.get('metadata', {}).get('name')}"
    try:
        kubernetes_validate.validate(manifest, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = "/".join(str(p) for p in e.absolute_path) or "(top)"
        raise BackendError(f"{what} is not a valid Kubernetes {kubernetes_version} object: "
                           f"{e.message} at {path}") from e
    except (kubernetes_validate.SchemaNotFoundError, VersionNotSupportedError) as e:
        raise BackendError(f"{what} cannot be validated: {e}") from e


def _strict_structural(schema: Any) -> Any:
    """Make a CRD's structural schema reject unknown fields, as the API server does.

    The server prunes (or, with strict field validation, refuses) fields the schema does
    not declare, except under ``x-kubernetes-preserve-unknown-fields``; JSON Schema allows
    them unless ``additionalProperties`` is false, so it is added where pruning applies.
    """
    if isinstance(schema, list):
        return [_strict_structural(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    result = {k: _strict_structural(v) for k, v in schema.items()}
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        result["additionalProperties"] = False
    return result


def _unique_map_keys(validator, keys, instance, schema):
    """``x-kubernetes-list-map-keys``: no two items of a map-list share their keys."""
    if schema.get("x-kubernetes-list-type") != "map" or not isinstance(instance, list):
        return
    import jsonschema

    seen = set()
    for item in instance:
        if isinstance(item, dict):
            key = tuple(json.dumps(item.get(k), sort_keys=True) for k in keys)
            if key in seen:
                yield jsonschema.ValidationError(
                    f"duplicate entry for key(s) {', '.join(keys)}: {item!r}")
            seen.add(key)


def _unique_set_items(validator, list_type, instance, schema):
    """``x-kubernetes-list-type: set``: the items are unique."""
    if list_type == "set" and isinstance(instance, list):
        yield from validator.descend(instance, {"uniqueItems": True})


@functools.lru_cache(maxsize=4)
def inference_service_schema(crd_path: str) -> dict:
    """The ``v1beta1`` openAPIV3Schema of KServe's InferenceService CRD file, as written.

    Parsing the 2 MB YAML takes about a second, so schemas are cached per file.
    """
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        with open(crd_path, encoding="utf-8") as f:
            crd = yaml.load(f, Loader=loader)
        version = next(v for v in crd["spec"]["versions"] if v["name"] == KSERVE_VERSION)
        return version["schema"]["openAPIV3Schema"]
    except (OSError, yaml.YAMLError, KeyError, TypeError, StopIteration) as e:
        raise BackendError(f"cannot read the {KSERVE_VERSION} InferenceService schema from "
                           f"{crd_path}: {e!r}") from e


@functools.lru_cache(maxsize=4)
def inference_service_validator(crd_path: str):
    """A JSON Schema validator for ``serving.kserve.io/v1beta1`` InferenceService objects.

    Built from the CRD's ``openAPIV3Schema`` (an OpenAPI 3.0 schema: its keywords follow
    JSON Schema draft 4, e.g. boolean ``exclusiveMinimum``) with the ``x-kubernetes-*``
    rules the API server applies (pruning of unknown fields, map-list keys, sets).
    """
    import jsonschema

    kind = jsonschema.validators.extend(jsonschema.Draft4Validator, {
        "x-kubernetes-list-map-keys": _unique_map_keys,
        "x-kubernetes-list-type": _unique_set_items,
    })
    return kind(_strict_structural(inference_service_schema(crd_path)))


def validate_inference_service(manifest: dict, crd_path: str | Path,
                               kubernetes_version: str = "1.30") -> None:
    """Raise ``BackendError`` unless ``manifest`` satisfies the InferenceService CRD.

    The CRD schema leaves ``metadata`` open (the API server checks it as ObjectMeta), so
    the metadata is checked with the core ObjectMeta schema too.
    """
    validator = inference_service_validator(str(Path(crd_path).resolve()))
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        path = "/".join(str(p) for p in first.absolute_path) or "(top)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise BackendError(f"InferenceService {manifest.get('metadata', {}).get('name')} does "
                           f"not satisfy the KServe CRD: {first.message} at {path}{more}")
    validate_core_manifest({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": manifest.get("metadata", {})}, kubernetes_version)


# -- the backend ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Kind:
    """How to read, create, patch, delete and list one kind of object in a namespace."""

    name: str
    read: Callable
    create: Callable
    patch: Callable
    delete: Callable
    list: Callable


class KubernetesBackend(Backend):
    kind = "kubernetes"

    PROJECT_SETTINGS = {"type": "object", "properties": {
        # Replicas and resources are the operator's (the cluster's capacity), not a project's.
        "namespace": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"},
        "env": {"type": "object", "maxProperties": 10,
                "propertyNames": {"enum": ["MODELGATE_THREADS", "MODELGATE_MAX_BATCH",
                                           "MODELGATE_BATCH_TIMEOUT_MS", "MODELGATE_MAX_QUEUE",
                                           "MODELGATE_LOG_LEVEL"]},
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
                 owner: str | None = None, **extra):
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
        projects' endpoints of one name in one namespace). Unknown settings are kept in
        ``extra`` and otherwise ignored.
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
        self.api = self._api_client(kubeconfig, context, in_cluster, host, verify_ssl, retries)
        self._kinds = self._build_kinds()

    @staticmethod
    def _api_client(kubeconfig, context, in_cluster, host, verify_ssl, retries) -> k8s.ApiClient:
        configuration = k8s.Configuration()
        try:
            if host:
                configuration.host = host.rstrip("/")
            elif in_cluster:
                k8s_config.load_incluster_config(client_configuration=configuration)
            else:
                k8s_config.load_kube_config(config_file=kubeconfig, context=context,
                                            client_configuration=configuration)
        except (ConfigException, OSError, TypeError, ValueError) as e:
            raise BackendError(f"cannot configure the Kubernetes client: {e}") from e
        configuration.verify_ssl = verify_ssl
        configuration.retries = retries
        return k8s.ApiClient(configuration)

    def _build_kinds(self) -> dict[str, _Kind]:
        core, apps, custom = k8s.CoreV1Api(self.api), k8s.AppsV1Api(self.api), \
            k8s.CustomObjectsApi(self.api)
        ns = self.namespace
        isvc = (KSERVE_GROUP, KSERVE_VERSION, ns, KSERVE_PLURAL)
        return {
            "ConfigMap": _Kind(
                "ConfigMap",
                read=lambda n, **kw: core.read_namespaced_config_map(n, ns, **kw),
                create=lambda b, **kw: core.create_namespaced_config_map(ns, b, **kw),
                patch=lambda n, b, **kw: core.patch_namespaced_config_map(n, ns, b, **kw),
                delete=lambda n, **kw: core.delete_namespaced_config_map(n, ns, **kw),
                list=lambda s, **kw: core.list_namespaced_config_map(ns, label_selector=s, **kw)),
            "Service": _Kind(
                "Service",
                read=lambda n, **kw: core.read_namespaced_service(n, ns, **kw),
                create=lambda b, **kw: core.create_namespaced_service(ns, b, **kw),
                patch=lambda n, b, **kw: core.patch_namespaced_service(n, ns, b, **kw),
                delete=lambda n, **kw: core.delete_namespaced_service(n, ns, **kw),
                list=lambda s, **kw: core.list_namespaced_service(ns, label_selector=s, **kw)),
            "Secret": _Kind(
                "Secret",
                read=lambda n, **kw: core.read_namespaced_secret(n, ns, **kw),
                create=lambda b, **kw: core.create_namespaced_secret(ns, b, **kw),
                patch=lambda n, b, **kw: core.patch_namespaced_secret(n, ns, b, **kw),
                delete=lambda n, **kw: core.delete_namespaced_secret(n, ns, **kw),
                list=lambda s, **kw: core.list_namespaced_secret(ns, label_selector=s, **kw)),
            "Deployment": _Kind(
                "Deployment",
                read=lambda n, **kw: apps.read_namespaced_deployment(n, ns, **kw),
                create=lambda b, **kw: apps.create_namespaced_deployment(ns, b, **kw),
                patch=lambda n, b, **kw: apps.patch_namespaced_deployment(n, ns, b, **kw),
                delete=lambda n, **kw: apps.delete_namespaced_deployment(n, ns, **kw),
                list=lambda s, **kw: apps.list_namespaced_deployment(ns, label_selector=s, **kw)),
            "InferenceService": _Kind(
                "InferenceService",
                read=lambda n, **kw: custom.get_namespaced_custom_object(*isvc, n, **kw),
                create=lambda b, **kw: custom.create_namespaced_custom_object(*isvc, b, **kw),
                patch=lambda n, b, **kw: custom.patch_namespaced_custom_object(*isvc, n, b, **kw),
                delete=lambda n, **kw: custom.delete_namespaced_custom_object(*isvc, n, **kw),
                list=lambda s, **kw: custom.list_namespaced_custom_object(
                    *isvc, label_selector=s, **kw)),
        }

    # -- API calls: every client error is translated here ------------------------------------

    def _call(self, what: str, fn: Callable, *args, missing_ok: bool = False,
              conflict_ok: bool = False, **kwargs) -> dict | None:
        """One API call; its JSON answer, or None for a 404 (409) allowed by the caller."""
        try:
            response = fn(*args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
            body = response.data
        except ApiException as e:
            if (e.status == 404 and missing_ok) or (e.status == 409 and conflict_ok):
                return None
            raise self._translate(what, e) from e
        except (urllib3.exceptions.HTTPError, OSError) as e:  # refused, reset, timed out...
            raise BackendUnavailable(f"cannot {what}: the Kubernetes API at "
                                     f"{self.api.configuration.host} did not answer ({e})") from e
        except (OpenApiException, TypeError, ValueError) as e:  # incl. pydantic's errors
            raise BackendError(f"cannot {what}: the Kubernetes client refused the request "
                               f"({e})") from e
        try:
            return json.loads(body) if body else {}
        except ValueError as e:
            raise BackendUnavailable(f"cannot {what}: the Kubernetes API answered something "
                                     "that is not JSON") from e

    def _translate(self, what: str, e: ApiException) -> BackendError | BackendUnavailable:
        try:
            message = json.loads(e.body or "{}").get("message") or e.reason
        except (ValueError, AttributeError):
            message = e.reason
        detail = f"cannot {what}: {e.status} {message}"
        if e.status in (409, 429) or (e.status or 0) >= 500:
            return BackendUnavailable(detail)  # a conflict or an overload may pass
        if e.status == 404:
            hint = (" (is KServe installed in the cluster?)" if "InferenceService" in what
                    else "")
            return BackendError(f"{detail}{hint}")
        return BackendError(detail)  # 400, 401, 403, 422, and 0 (TLS or client errors)

    def _read(self, kind: str, name: str) -> dict | None:
        return self._call(f"read {kind} {name}", self._kinds[kind].read, name, missing_ok=True)

    def _list(self, kind: str, endpoint_name: str) -> list[dict]:
        """Objects of ``kind`` labelled for the endpoint (filtered here too: some API
        emulators ignore label selectors)."""
        selector = f"{ENDPOINT_LABEL}={endpoint_name},{MANAGED_BY}=modelgate"
        answer = self._call(f"list {kind}s of {endpoint_name}", self._kinds[kind].list,
                            selector) or {}
        wanted = {ENDPOINT_LABEL: endpoint_name, MANAGED_BY: "modelgate"}
        return [item for item in answer.get("items") or []
                if _contains((item.get("metadata") or {}).get("labels"), wanted)]

    def _check_owner(self, existing: dict | None, what: str) -> None:
        """Refuse to touch an object another environment owns; adopt unlabelled ones."""
        labels = ((existing or {}).get("metadata") or {}).get("labels") or {}
        found = labels.get(OWNER_LABEL)
        if self.owner and found and found != self.owner:
            raise BackendError(f"{what} in namespace {self.namespace} belongs to another "
                               "environment; refusing to change it (choose another namespace "
                               "or model name)")

    def _foreign(self, existing: dict | None) -> bool:
        labels = ((existing or {}).get("metadata") or {}).get("labels") or {}
        return bool(self.owner and labels.get(OWNER_LABEL, self.owner) != self.owner)

    def _foreign_state(self, endpoint: str) -> ObservedState:
        """Another environment's endpoint of the same name: never reported as this one's."""
        return ObservedState(endpoint=endpoint, exists=True, ready=False,
                             detail=f"{self._name(endpoint)} in namespace {self.namespace} "
                                    "belongs to another environment")

    def _delete(self, kind: str, name: str) -> None:
        self._call(f"delete {kind} {name}", self._kinds[kind].delete, name, missing_ok=True,
                   propagation_policy="Background")

    def _converge(self, manifest: dict, existing: dict | None) -> str:
        """Create ``manifest`` or merge-patch what differs; 'created', 'patched' or
        'unchanged'. ``None`` values in ``manifest`` are keys to remove."""
        kind = self._kinds[manifest["kind"]]
        name = manifest["metadata"]["name"]
        self._check_owner(existing, f"{kind.name} {name}")
        if existing is None:
            created = self._call(f"create {kind.name} {name}", kind.create,
                                 _without_nones(manifest), conflict_ok=True)
            if created is not None:
                return "created"
            existing = self._read(kind.name, name)  # another worker created it meanwhile
            if existing is None:
                raise BackendUnavailable(f"{kind.name} {name} was created and deleted meanwhile")
            self._check_owner(existing, f"{kind.name} {name}")
        if _contains(existing, manifest):
            return "unchanged"
        self._call(f"patch {kind.name} {name}", kind.patch, name, _merge_patch_body(manifest),
                   _content_type=MERGE_PATCH)
        return "patched"

    def _validate(self, manifest: dict) -> None:
        if not self.validate:
            return
        body = _without_nones(manifest)
        if manifest["kind"] == "InferenceService":
            if self.crd_schema:
                validate_inference_service(body, self.crd_schema, self.kubernetes_version)
        else:
            validate_core_manifest(body, self.kubernetes_version)

    # -- manifests shared by both modes ------------------------------------------------------

    def _labels(self, name: str, **more: str) -> dict:
        owner = {OWNER_LABEL: self.owner} if self.owner else {}
        return {MANAGED_BY: "modelgate", ENDPOINT_LABEL: name, **owner, **more}

    def _container(self, name: str, endpoint: str, probe_port: int | str) -> dict:
        env = [{"name": k, "value": v}
               for k, v in sorted({"MODELGATE_ENDPOINT": endpoint, **self.env}.items())]
        if self.prediction_key:
            env.append({"name": PREDICTION_KEY_ENV, "valueFrom": {"secretKeyRef": {
                "name": self._key_secret_name(endpoint), "key": "key"}}})
        return {
            "name": name,
            "image": self.image,
            "command": ["python", "-m", "ops.serving"],
            "args": ["--plan", f"{PLAN_DIR}/{PLAN_KEY}", "--host", "0.0.0.0",
                     "--port", str(PORT)],
            "env": env,
            "resources": copy.deepcopy(self.resources),
            "volumeMounts": [{"name": "plan", "mountPath": PLAN_DIR, "readOnly": True}],
            "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": probe_port}},
        }

    def _name(self, endpoint: str) -> str:
        """The name of the endpoint's objects: the endpoint and its owner, so two projects'
        models of one name in one namespace never share (or fight over) an object."""
        if not endpoint:
            raise BackendError("an endpoint needs a name")
        return resource_name(f"{endpoint}-{self.owner}" if self.owner else endpoint)

    def _key_secret_name(self, endpoint: str) -> str:
        return f"{self._name(endpoint)}-prediction-key"

    def _converge_key_secret(self, endpoint: str) -> None:
        """The Secret holding the key the endpoint's servers sign prediction ids with (in a
        Secret, not the pod spec, so reading a Deployment does not reveal it)."""
        if not self.prediction_key:
            return
        name = self._key_secret_name(endpoint)
        secret = {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": self.namespace,
                         "labels": self._labels(self._name(endpoint)),
                         "annotations": {ENDPOINT_ANNOTATION: endpoint}},
            "data": {"key": base64.b64encode(self.prediction_key.encode()).decode()},
        }
        self._validate(secret)
        self._converge(secret, self._read("Secret", name))

    def _plan_config_map(self, cm_name: str, name: str, endpoint: str, data: dict,
                         annotations: dict | None = None) -> dict:
        size = sum(len(k) + len(v.encode()) for k, v in data.items())
        if size > CONFIGMAP_MAX_BYTES:
            raise BackendError(f"the serving plan of {endpoint} is {size} bytes; a ConfigMap "
                               f"holds at most {CONFIGMAP_MAX_BYTES} (smaller schemas or "
                               "baselines needed)")
        return {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": cm_name, "namespace": self.namespace,
                         "labels": self._labels(name),
                         "annotations": {ENDPOINT_ANNOTATION: endpoint, **(annotations or {})}},
            "data": data,
        }

    # -- the contract --------------------------------------------------------------------------

    def apply(self, plan: ServingPlan) -> ObservedState:
        if self.mode == "kserve":
            self._apply_kserve(plan)
        else:
            self._apply_deployments(plan)
        return self.observe(plan.endpoint)

    def observe(self, endpoint: str) -> ObservedState:
        if self.mode == "kserve":
            return self._observe_kserve(endpoint)
        return self._observe_deployments(endpoint)

    def delete(self, endpoint: str) -> None:
        """Remove what this mode creates for ``endpoint``; what is gone already is fine."""
        name = self._name(endpoint)
        main = "InferenceService" if self.mode == "kserve" else "Service"
        self._check_owner(self._read(main, name), f"{main} {name}")
        if self.mode == "kserve":
            self._delete("InferenceService", name)
        else:
            for deployment in self._list("Deployment", name):
                self._delete("Deployment", deployment["metadata"]["name"])
            self._delete("Service", name)
        for config_map in self._list("ConfigMap", name):
            self._delete("ConfigMap", config_map["metadata"]["name"])
        # By name: listing Secrets would need the right to read every Secret in the namespace.
        self._delete("Secret", self._key_secret_name(endpoint))

    # -- kserve mode ------------------------------------------------------------------------

    def _apply_kserve(self, plan: ServingPlan) -> None:
        name = self._name(plan.endpoint)
        if plan.shadow:
            raise BackendError(f"plan {plan.generation} of {plan.endpoint} mirrors traffic to "
                               f"shadow variant {plan.shadow!r}: KServe cannot express a "
                               "shadow (use mode 'deployments' or the local backend)")
        live = list(plan.variants)
        if len(live) > 2:
            raise BackendError(
                f"plan {plan.generation} of {plan.endpoint} has {len(live)} live variants "
                f"({', '.join(v.name for v in live)}): a KServe InferenceService splits "
                "traffic between at most two revisions (a stable and a canary)")
        current = self._read("InferenceService", name)
        record = _record(current)
        stable, predictor, percent = self._kserve_roles(plan, live, record, current)

        # Reuse the ConfigMap of a pod spec already running (no new revision for it).
        maps = {entry.get("fingerprint"): entry.get("config_map") for entry in record}
        predictor_map = maps.get(fingerprint(predictor)) or f"{name}-plan-{plan.generation}"
        roles = [(predictor, "latest", predictor_map)]
        if stable is not None:
            roles.append((stable, "previous", maps[fingerprint(stable)]))
        latest_weight = 1.0 if percent is None else percent / 100
        entries = [{"name": v.name, "version_id": v.version_id,
                    "weight": latest_weight if role == "latest" else round(1 - latest_weight, 6),
                    "replicas": v.replicas, "role": role, "fingerprint": fingerprint(v),
                    "config_map": cm} for v, role, cm in sorted(
                        roles, key=lambda r: live.index(r[0]))]  # in the plan's order

        config_maps = [self._plan_config_map(
            cm, name, plan.endpoint, {PLAN_KEY: single_variant_plan(plan, v).to_json()},
            {FINGERPRINT_ANNOTATION: fingerprint(v)}) for v, _, cm in roles]
        isvc = self._inference_service(plan, name, predictor, predictor_map, percent, entries)
        for manifest in (*config_maps, isvc):
            self._validate(manifest)

        self._converge_key_secret(plan.endpoint)
        for manifest in config_maps:
            self._converge(manifest, self._read("ConfigMap", manifest["metadata"]["name"]))
        self._converge(isvc, current)
        keep = {cm for _, _, cm in roles}
        for config_map in self._list("ConfigMap", name):
            if config_map["metadata"]["name"] not in keep:
                self._delete("ConfigMap", config_map["metadata"]["name"])

    def _kserve_roles(self, plan: ServingPlan, live: list[Variant], record: list[dict],
                      current: dict | None) -> tuple[Variant | None, Variant, int | None]:
        """(stable, predictor, canaryTrafficPercent) for ``plan`` given what runs now."""
        if len(live) == 1:
            return None, live[0], None
        # KServe sends the rest of the traffic to the last rolled-out revision: the one
        # recorded as 'previous' during a canary, else the one the predictor runs.
        rolled_out = next((e for e in record if e.get("role") == "previous"), None) or \
            next((e for e in record if e.get("role") == "latest"), None)
        matching = [v for v in live
                    if rolled_out and fingerprint(v) == rolled_out.get("fingerprint")]
        if not matching:
            serves = (f"version {rolled_out.get('version_id')} ({rolled_out.get('name')})"
                      if rolled_out else ("nothing modelgate recorded" if current
                                          else "nothing yet"))
            raise BackendError(
                f"plan {plan.generation} of {plan.endpoint} splits traffic between "
                f"{' and '.join(v.name for v in live)}, but the InferenceService serves "
                f"{serves}: KServe can only split between a new predictor and the revision it "
                "already serves; apply a plan with the stable variant alone first")
        stable = matching[0]
        predictor = next(v for v in live if v is not stable)
        return stable, predictor, round(plan.weights()[predictor.name] * 100)

    def _inference_service(self, plan: ServingPlan, name: str, predictor: Variant,
                           config_map: str, percent: int | None, entries: list[dict]) -> dict:
        container = self._container("kserve-container", plan.endpoint, PORT)
        container["ports"] = [{"containerPort": PORT, "protocol": "TCP"}]
        return {
            "apiVersion": f"{KSERVE_GROUP}/{KSERVE_VERSION}", "kind": "InferenceService",
            "metadata": {
                "name": name, "namespace": self.namespace, "labels": self._labels(name),
                "annotations": {
                    ENDPOINT_ANNOTATION: plan.endpoint,
                    GENERATION_ANNOTATION: str(plan.generation),
                    VARIANTS_ANNOTATION: json.dumps(entries, sort_keys=True),
                },
            },
            "spec": {"predictor": {
                "minReplicas": max(1, predictor.replicas),
                "serviceAccountName": self.service_account,
                "canaryTrafficPercent": percent,  # None: removed, all traffic to the latest
                "containers": [container],
                "volumes": [{"name": "plan", "configMap": {"name": config_map}}],
            }},
        }

    def _observe_kserve(self, endpoint: str) -> ObservedState:
        name = self._name(endpoint)
        isvc = self._read("InferenceService", name)
        if isvc is None:
            return ObservedState(endpoint=endpoint, exists=False)
        if self._foreign(isvc):
            return self._foreign_state(endpoint)
        meta = isvc.get("metadata") or {}
        status = isvc.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        ready_condition = conditions.get("Ready") or {}
        current = status.get("observedGeneration") is None or meta.get("generation") is None \
            or status["observedGeneration"] >= meta["generation"]
        ready = ready_condition.get("status") == "True" and current
        predictor = (status.get("components") or {}).get("predictor") or {}
        latest_ready = ready and predictor.get("latestReadyRevision", "") == \
            predictor.get("latestCreatedRevision", "")
        if not status:
            detail = "no status yet: no controller has reconciled the InferenceService"
        elif not current:
            detail = "KServe has not reconciled the latest spec yet"
        else:
            detail = ready_condition.get("message") or ready_condition.get("reason") or ""
        variants = tuple(
            ObservedVariant(name=e["name"], version_id=int(e["version_id"]),
                            weight=float(e["weight"]),
                            ready=latest_ready if e.get("role") == "latest" else ready,
                            replicas=int(e.get("replicas", 1)))
            for e in _record(isvc))
        spec = (isvc.get("spec") or {}).get("predictor") or {}
        return ObservedState(
            endpoint=endpoint, exists=True, generation=_generation(meta), ready=ready,
            variants=variants, url=status.get("url"), detail=detail,
            extra={"mode": "kserve", "name": name, "namespace": self.namespace,
                   "canary_traffic_percent": spec.get("canaryTrafficPercent"),
                   "traffic": predictor.get("traffic") or []})

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
                # The generated connect_post_namespaced_pod_proxy_with_path sends no body.
                request = self.api.param_serialize(
                    "POST", f"/api/v1/namespaces/{self.namespace}/pods/{pod}:{PORT}/proxy{path}",
                    header_params={"Content-Type": "application/json",
                                   "Accept": "application/json"},
                    body={"instances": rows}, auth_settings=["BearerToken"])
                response = self.api.call_api(*request, _request_timeout=self.timeout)
                response.read()
                succeeded += 200 <= response.status < 300
            except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as e:
                log.info("smoke request to %s/%s (pod %s) failed: %s", endpoint, variant, pod, e)
        return succeeded

    def _ready_pods(self, endpoint: str, variant: str) -> list[str]:
        name = self._name(endpoint)
        if self.mode == "deployments":
            wanted = {"app": name, VARIANT_LABEL: variant_label(variant)}
        else:
            isvc = self._read("InferenceService", name) or {}
            predictor = (((isvc.get("status") or {}).get("components") or {})
                         .get("predictor") or {})
            role = next((e.get("role") for e in _record(isvc) if e.get("name") == variant), None)
            revision = predictor.get("latestCreatedRevision" if role == "latest"
                                     else "latestRolledoutRevision")
            if not role or not revision:
                return []
            wanted = {"serving.knative.dev/revision": revision}
        selector = ",".join(f"{k}={v}" for k, v in wanted.items())
        core = k8s.CoreV1Api(self.api)
        listed = self._call("list pods", core.list_namespaced_pod, self.namespace,
                            label_selector=selector) or {}
        ready = []
        for pod in listed.get("items", []):
            meta, status = pod.get("metadata") or {}, pod.get("status") or {}
            conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
            if (_contains(meta.get("labels"), wanted) and status.get("phase") == "Running"
                    and conditions.get("Ready") == "True" and not meta.get("deletionTimestamp")):
                ready.append(meta["name"])
        return sorted(ready)

    # -- deployments mode -------------------------------------------------------------------

    def _apply_deployments(self, plan: ServingPlan) -> None:
        name = self._name(plan.endpoint)
        live = [v for v in plan.variants if v.name != plan.shadow]
        labels = {v.name: variant_label(v.name) for v in plan.variants}
        if len(set(labels.values())) != len(labels):
            raise BackendError(f"variant names of {plan.endpoint} collide once made into "
                               f"Kubernetes names: {labels}")
        weights = plan.weights()
        total = self.total_replicas or target_replicas(live, weights)
        replicas = split_replicas(weights, total)
        # A live variant with no traffic (blue/green's idle candidate, or the stable kept
        # warm after the switch) runs at its own capacity, and the Service then selects
        # only the variant that has traffic: switching is a selector change, to warm pods.
        serving = [v for v in live if weights.get(v.name, 0.0) > 0]
        idle = [v for v in live if weights.get(v.name, 0.0) <= 0]
        for v in idle:
            replicas[v.name] = max(int(v.replicas), 1)
        only = labels[serving[0].name] if idle and len(serving) == 1 else None
        cm_name = f"{name}-plan"
        plans = {v.name: single_variant_plan(plan, v).to_json() for v in live}
        config_map = self._plan_config_map(
            cm_name, name, plan.endpoint,
            {PLAN_KEY: plan.to_json(), **{f"{labels[n]}.json": text for n, text in plans.items()}})
        deployments = [self._deployment(plan, name, v, labels[v.name], replicas[v.name],
                                        cm_name, plans[v.name]) for v in live]
        entries = [{"name": v.name, "version_id": v.version_id,
                    "weight": round(weights.get(v.name, 0.0), 6), "label": labels[v.name],
                    "replicas": replicas.get(v.name, 0), "shadow": v.name == plan.shadow}
                   for v in plan.variants]
        service = self._service(plan, name, entries, only)
        for manifest in (config_map, *deployments, service):
            self._validate(manifest)

        self._converge_key_secret(plan.endpoint)
        existing = {d["metadata"]["name"]: d for d in self._list("Deployment", name)}
        current_map = self._read("ConfigMap", cm_name)
        for key in (current_map or {}).get("data") or {}:
            config_map["data"].setdefault(key, None)  # plans of variants gone: removed
        self._converge(config_map, current_map)
        for manifest in deployments:
            self._converge(manifest, existing.get(manifest["metadata"]["name"]))
        self._converge(service, self._read("Service", name))
        wanted = {d["metadata"]["name"] for d in deployments}
        for stale in sorted(set(existing) - wanted):
            self._delete("Deployment", stale)

    def _deployment(self, plan: ServingPlan, name: str, variant: Variant, label: str,
                    replicas: int, cm_name: str, plan_json: str) -> dict:
        pod_labels = {"app": name, VARIANT_LABEL: label, **self._labels(name)}
        container = self._container("model-server", plan.endpoint, "http")
        container["ports"] = [{"name": "http", "containerPort": PORT, "protocol": "TCP"}]
        container["livenessProbe"] = {"httpGet": {"path": "/v2/health/live", "port": "http"}}
        # The checksum leaves out the generation: a new plan that keeps this variant's model
        # updates the mounted file in place (the server reloads it), without new pods.
        checksum = hashlib.sha256(
            json.dumps({**json.loads(plan_json), "generation": 0}, sort_keys=True).encode()
        ).hexdigest()[:16]
        return {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": f"{name}-{label}", "namespace": self.namespace, "labels": pod_labels,
                "annotations": {ENDPOINT_ANNOTATION: plan.endpoint,
                                VARIANTS_ANNOTATION: json.dumps(
                                    {"name": variant.name, "version_id": variant.version_id},
                                    sort_keys=True)},
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name, VARIANT_LABEL: label}},
                "template": {
                    "metadata": {"labels": pod_labels,
                                 "annotations": {CHECKSUM_ANNOTATION: checksum}},
                    "spec": {
                        "serviceAccountName": self.service_account,
                        "containers": [container],
                        "volumes": [{"name": "plan", "configMap": {
                            "name": cm_name,
                            "items": [{"key": f"{label}.json", "path": PLAN_KEY}]}}],
                    },
                },
            },
        }

    def _service(self, plan: ServingPlan, name: str, entries: list[dict],
                 only: str | None = None) -> dict:
        # None removes a narrowing left by an earlier plan (merge patch).
        selector = {"app": name, VARIANT_LABEL: only}
        return {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {
                "name": name, "namespace": self.namespace, "labels": self._labels(name),
                "annotations": {
                    ENDPOINT_ANNOTATION: plan.endpoint,
                    GENERATION_ANNOTATION: str(plan.generation),
                    VARIANTS_ANNOTATION: json.dumps(entries, sort_keys=True),
                    SHADOW_ANNOTATION: plan.shadow,
                },
            },
            "spec": {
                "selector": selector,
                "ports": [{"name": "http", "port": 80, "targetPort": "http",
                           "protocol": "TCP"}],
            },
        }

    def _observe_deployments(self, endpoint: str) -> ObservedState:
        name = self._name(endpoint)
        service = self._read("Service", name)
        if self._foreign(service):
            return self._foreign_state(endpoint)
        deployments = {(d["metadata"].get("labels") or {}).get(VARIANT_LABEL): d
                       for d in self._list("Deployment", name)}
        if service is None and not deployments:
            return ObservedState(endpoint=endpoint, exists=False)
        meta = (service or {}).get("metadata") or {}
        entries = _record(service)
        observed, waiting = [], []
        for entry in entries:
            deployment = deployments.get(entry.get("label"))
            if entry.get("shadow"):
                continue
            spec_replicas, ready = _deployment_readiness(deployment)
            if entry["weight"] > 0 and not ready:
                waiting.append(entry["name"])
            observed.append(ObservedVariant(
                name=entry["name"], version_id=int(entry["version_id"]),
                weight=float(entry["weight"]), ready=ready, replicas=spec_replicas))
        live_ready = service is not None and bool(entries) and not waiting
        observed += [ObservedVariant(name=e["name"], version_id=int(e["version_id"]),
                                     weight=0.0, ready=live_ready, replicas=0)
                     for e in entries if e.get("shadow")]
        if service is None:
            detail = f"Service {name} is missing"
        elif waiting:
            detail = "waiting for ready replicas of " + ", ".join(waiting)
        else:
            detail = ""
        return ObservedState(
            endpoint=endpoint, exists=True, generation=_generation(meta), ready=live_ready,
            variants=tuple(observed),
            url=f"http://{name}.{self.namespace}.svc" if service is not None else None,
            detail=detail,
            extra={"mode": "deployments", "name": name, "namespace": self.namespace,
                   "shadow": meta.get("annotations", {}).get(SHADOW_ANNOTATION),
                   "deployments": sorted(d["metadata"]["name"] for d in deployments.values())})


def _record(obj: dict | None) -> list[dict]:
    """The variants modelgate recorded on ``obj`` (its ``modelgate.io/variants``)."""
    annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
    try:
        entries = json.loads(annotations.get(VARIANTS_ANNOTATION) or "[]")
    except ValueError:
        return []
    return [e for e in entries if isinstance(e, dict) and "name" in e and "version_id" in e] \
        if isinstance(entries, list) else []


def _generation(meta: dict) -> int | None:
    try:
        return int((meta.get("annotations") or {})[GENERATION_ANNOTATION])
    except (KeyError, TypeError, ValueError):
        return None


def _deployment_readiness(deployment: dict | None) -> tuple[int, bool]:
    """(desired replicas, rolled out and ready) of a Deployment from its status."""
    if deployment is None:
        return 0, False
    replicas = int((deployment.get("spec") or {}).get("replicas", 1))
    status = deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    current = generation is None or (observed is not None and observed >= generation)
    ready = (replicas > 0 and current and status.get("readyReplicas", 0) >= replicas
             and status.get("updatedReplicas", 0) >= replicas)
    return replicas, ready
