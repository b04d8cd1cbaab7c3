"""Plan to manifests: the objects that make an endpoint serve a plan, built without a cluster.

Every pod runs the model-server image (``python -m ops.serving --plan
/etc/modelgate/plan.json``) and reads a serving plan from a ConfigMap mounted at
``/etc/modelgate``. Each pod serves exactly one variant (``single_variant_plan``): traffic
between variants is split by the platform (KServe/Knative revisions, or kube-proxy over
replicas), never twice. What was applied is recorded in annotations
(``modelgate.io/generation``, ``modelgate.io/plan-digest`` and ``modelgate.io/variants``),
so ``observe`` reports the desired split from the objects alone (``recorded_variants``,
``recorded_generation``) and ``apply`` can refuse an older plan (``recorded_digest``).

A manifest is a plain dict; a ``None`` value marks a key a merge patch must remove.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

from ops.backends.base import BackendError, plan_digest
from ops.backends.kubernetes.names import (
    CHECKSUM_ANNOTATION,
    ENDPOINT_ANNOTATION,
    ENDPOINT_LABEL,
    GENERATION_ANNOTATION,
    KSERVE_GROUP,
    KSERVE_VERSION,
    MANAGED_BY,
    MONITORING_ANNOTATION,
    MONITORING_LABELS,
    OWNER_LABEL,
    PLAN_DIGEST_ANNOTATION,
    PLAN_DIR,
    PLAN_KEY,
    PORT,
    SHADOW_ANNOTATION,
    VARIANT_LABEL,
    VARIANTS_ANNOTATION,
    owned_name,
)
from ops.plan import ServingPlan, Variant
from ops.serving.ids import KEY_ENV as PREDICTION_KEY_ENV

CONFIGMAP_MAX_BYTES = 1_000_000  # the API server refuses ConfigMaps over 1 MiB


# -- plans and replicas ---------------------------------------------------------------------


def fingerprint(variant: Variant) -> str:
    """What makes a pod differ: everything but the variant's name and traffic weight.

    The version number is left out too: it follows from ``version_id``, and a revision
    recorded before plans carried it must still be recognised as the one serving."""
    fields = {k: v for k, v in asdict(variant).items()
              if k not in ("name", "weight", "version_number")}
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


# -- manifest documents ---------------------------------------------------------------------


def contains(actual: Any, desired: Any) -> bool:
    """Whether ``actual`` (read from the cluster) already holds everything in ``desired``.

    Keys the cluster added (defaults, status, metadata) are ignored; a ``None`` in
    ``desired`` means the key must be absent (or empty, as the API server defaults some,
    e.g. a container's ``resources: {}``); lists must match element by element.
    """
    if desired is None:
        return actual is None or actual == {} or actual == []
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(
            contains(actual.get(k), v) for k, v in desired.items())
    if isinstance(desired, list):
        return (isinstance(actual, list) and len(actual) == len(desired)
                and all(contains(a, d) for a, d in zip(actual, desired, strict=True)))
    return type(actual) is type(desired) and actual == desired


def without_nones(manifest: Any) -> Any:
    """``manifest`` without the ``None`` markers (keys a merge patch must remove)."""
    if isinstance(manifest, dict):
        return {k: without_nones(v) for k, v in manifest.items() if v is not None}
    if isinstance(manifest, list):
        return [without_nones(v) for v in manifest]
    return manifest


def merge_patch_body(manifest: Any) -> Any:
    """The merge patch converging an object to ``manifest``: ``None`` removes a key, but a
    list is replaced whole, so the markers inside lists are dropped (RFC 7386)."""
    if isinstance(manifest, dict):
        return {k: merge_patch_body(v) for k, v in manifest.items()}
    if isinstance(manifest, list):
        return without_nones(manifest)
    return manifest


def recorded_variants(obj: dict | None) -> list[dict]:
    """The variants modelgate recorded on ``obj`` (its ``modelgate.io/variants``)."""
    annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
    try:
        entries = json.loads(annotations.get(VARIANTS_ANNOTATION) or "[]")
    except ValueError:
        return []
    return [e for e in entries if isinstance(e, dict) and "name" in e and "version_id" in e] \
        if isinstance(entries, list) else []


def recorded_generation(meta: dict) -> int | None:
    try:
        return int((meta.get("annotations") or {})[GENERATION_ANNOTATION])
    except (KeyError, TypeError, ValueError):
        return None


def recorded_digest(meta: dict) -> str | None:
    """The ``plan_digest`` of the plan recorded on an object (None before digests were)."""
    return (meta.get("annotations") or {}).get(PLAN_DIGEST_ANNOTATION) or None


# -- the objects ----------------------------------------------------------------------------


class ManifestBuilder:
    """Builds an endpoint's manifests from a plan and the backend's machine-level settings
    (namespace, image, service account, resources, extra environment, prediction key and
    owner). Builds only: sends nothing, reads nothing."""

    def __init__(self, namespace: str, image: str, service_account: str | None = None,
                 resources: dict | None = None, env: dict | None = None,
                 prediction_key: str | None = None, owner: str | None = None,
                 namer: Callable[[str], str] | None = None,
                 monitoring_labels: dict | None = None):
        self._namer = namer or (lambda endpoint: owned_name(endpoint, owner))
        self.namespace = namespace
        self.image = image
        self.service_account = service_account
        self.resources = resources
        self.env = env or {}
        self.prediction_key = prediction_key
        self.owner = owner
        self.monitoring = monitoring_annotations(monitoring_labels)

    def name(self, endpoint: str) -> str:
        """The name of the endpoint's objects (by default its owner's, see ``owned_name``;
        the backend passes its own ``namer``)."""
        return self._namer(endpoint)

    def labels(self, name: str, **more: str) -> dict:
        owner = {OWNER_LABEL: self.owner} if self.owner else {}
        return {MANAGED_BY: "modelgate", ENDPOINT_LABEL: name, **owner, **more}

    def pod_annotations(self, **more: str) -> dict:
        """A model pod's annotations: its monitoring labels (project, environment) and
        ``more``."""
        return {**self.monitoring, **more}

    def container(self, name: str, endpoint: str, probe_port: int | str) -> dict:
        env = [{"name": k, "value": v}
               for k, v in sorted({"MODELGATE_ENDPOINT": endpoint, **self.env}.items())]
        if self.prediction_key:
            env.append({"name": PREDICTION_KEY_ENV, "valueFrom": {"secretKeyRef": {
                "name": self.key_secret_name(endpoint), "key": "key"}}})
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

    def key_secret_name(self, endpoint: str) -> str:
        return f"{self.name(endpoint)}-prediction-key"

    def key_secret(self, endpoint: str) -> dict | None:
        """The Secret holding the key the endpoint's servers sign prediction ids with (in a
        Secret, not the pod spec, so reading a Deployment does not reveal it); None without
        a prediction key."""
        if not self.prediction_key:
            return None
        return {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": self.key_secret_name(endpoint), "namespace": self.namespace,
                         "labels": self.labels(self.name(endpoint)),
                         "annotations": {ENDPOINT_ANNOTATION: endpoint}},
            "data": {"key": base64.b64encode(self.prediction_key.encode()).decode()},
        }

    def plan_config_map(self, cm_name: str, name: str, endpoint: str, data: dict,
                        annotations: dict | None = None) -> dict:
        size = sum(len(k) + len(v.encode()) for k, v in data.items())
        if size > CONFIGMAP_MAX_BYTES:
            raise BackendError(f"the serving plan of {endpoint} is {size} bytes; a ConfigMap "
                               f"holds at most {CONFIGMAP_MAX_BYTES} (smaller schemas or "
                               "baselines needed)")
        return {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": cm_name, "namespace": self.namespace,
                         "labels": self.labels(name),
                         "annotations": {ENDPOINT_ANNOTATION: endpoint, **(annotations or {})}},
            "data": data,
        }

    def routing_metadata(self, plan: ServingPlan, name: str, entries: list[dict],
                         extra: dict | None = None) -> dict:
        """The metadata of the object that routes the endpoint's traffic (InferenceService
        or Service): which plan generation (and plan) and which variants it serves."""
        return {
            "name": name, "namespace": self.namespace, "labels": self.labels(name),
            "annotations": {
                ENDPOINT_ANNOTATION: plan.endpoint,
                GENERATION_ANNOTATION: str(plan.generation),
                PLAN_DIGEST_ANNOTATION: plan_digest(plan),
                VARIANTS_ANNOTATION: json.dumps(entries, sort_keys=True),
                **(extra or {}),
            },
        }

    def inference_service(self, plan: ServingPlan, name: str, predictor: Variant,
                          config_map: str, percent: int | None, entries: list[dict]) -> dict:
        container = self.container("kserve-container", plan.endpoint, PORT)
        container["ports"] = [{"containerPort": PORT, "protocol": "TCP"}]
        return {
            "apiVersion": f"{KSERVE_GROUP}/{KSERVE_VERSION}", "kind": "InferenceService",
            "metadata": self.routing_metadata(plan, name, entries),
            "spec": {"predictor": {
                "minReplicas": max(1, predictor.replicas),
                "serviceAccountName": self.service_account,
                "canaryTrafficPercent": percent,  # None: removed, all traffic to the latest
                "containers": [container],
                "volumes": [{"name": "plan", "configMap": {"name": config_map}}],
                # KServe puts a component's annotations on its pods.
                **({"annotations": self.pod_annotations()} if self.monitoring else {}),
            }},
        }

    def deployment(self, plan: ServingPlan, name: str, variant: Variant, label: str,
                   replicas: int, cm_name: str, plan_json: str) -> dict:
        pod_labels = {"app": name, VARIANT_LABEL: label, **self.labels(name)}
        container = self.container("model-server", plan.endpoint, "http")
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
                    "metadata": {"labels": pod_labels, "annotations": self.pod_annotations(
                        **{CHECKSUM_ANNOTATION: checksum})},
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

    def service(self, plan: ServingPlan, name: str, entries: list[dict],
                only: str | None = None) -> dict:
        # None removes a narrowing left by an earlier plan (merge patch).
        selector = {"app": name, VARIANT_LABEL: only}
        return {
            "apiVersion": "v1", "kind": "Service",
            "metadata": self.routing_metadata(plan, name, entries,
                                              {SHADOW_ANNOTATION: plan.shadow}),
            "spec": {
                "selector": selector,
                "ports": [{"name": "http", "port": 80, "targetPort": "http",
                           "protocol": "TCP"}],
            },
        }


def monitoring_annotations(labels: dict | None) -> dict[str, str]:
    """``{"project": "p", "environment": "e"}`` as pod annotations; other keys are refused
    (the portal gives these two, never a stored setting)."""
    unknown = set(labels or {}) - set(MONITORING_LABELS)
    if unknown:
        raise BackendError(f"unknown monitoring labels {sorted(unknown)}; valid: "
                           + ", ".join(MONITORING_LABELS))
    return {MONITORING_ANNOTATION.format(k): str(v)
            for k, v in sorted((labels or {}).items()) if v}
