"""Deployments mode (clusters without KServe): plain Deployments behind one Service.

One Deployment ``<name>-<variant>`` per live variant, labelled ``app=<name>`` and
``modelgate.io/variant=<variant>``, all behind one Service ``<name>`` selecting
``app=<name>``; one ConfigMap ``<name>-plan`` holds a plan per variant (the shadow, if any,
is carried inside every live variant's plan: each pod mirrors its requests to it). Traffic
follows replica counts: the total is the ``total_replicas`` setting, or else the
traffic-weighted mean of the variants' ``replicas`` rounded up; it is apportioned by largest
remainder (ties to the earlier variant), then every variant with a weight above 0 gets at
least 1 replica (so the total may exceed the target by the number of variants raised). A
live variant with weight 0 (blue/green's idle candidate, the stable kept warm after the
switch) keeps its own ``replicas`` and the Service then selects only the variant with
traffic, so the switch is a selector change onto warm pods; ``smoke`` reaches an idle
variant's pods through the API server's pod proxy. Deployments of variants that left the
plan are deleted. Readiness comes from each Deployment's status (``readyReplicas`` and
``updatedReplicas`` covering ``spec.replicas`` for the current generation). A variant that
is not ready and that Kubernetes says will not run (its Deployment past its progress
deadline, or a pod of its current template crash-looping or unable to pull its image:
``refusals.py``) makes the plan ``refused``, with no generation served: the Service keeps
sending traffic to the ready pods, which run what was there before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ops.backends.base import BackendError, BackendUnavailable, ObservedState, ObservedVariant
from ops.backends.kubernetes.client import KubeClient
from ops.backends.kubernetes.manifests import (
    ManifestBuilder,
    recorded_generation,
    recorded_variants,
    single_variant_plan,
    split_replicas,
    target_replicas,
)
from ops.backends.kubernetes.mode import Mode
from ops.backends.kubernetes.names import (
    PLAN_KEY,
    SHADOW_ANNOTATION,
    VARIANT_LABEL,
    variant_label,
)
from ops.backends.kubernetes.refusals import deployment_refusal, pod_refusal
from ops.plan import ServingPlan

log = logging.getLogger(__name__)


class DeploymentsMode(Mode):
    name = "deployments"
    main_kind = "Service"

    def __init__(self, client: KubeClient, manifests: ManifestBuilder,
                 validate: Callable[[dict], None], total_replicas: int | None = None):
        super().__init__(client, manifests, validate)
        self.total_replicas = total_replicas

    def converge(self, plan: ServingPlan, current: dict | None) -> None:
        name = self.manifests.name(plan.endpoint)
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
        config_map = self.manifests.plan_config_map(
            cm_name, name, plan.endpoint,
            {PLAN_KEY: plan.to_json(), **{f"{labels[n]}.json": text for n, text in plans.items()}})
        deployments = [self.manifests.deployment(plan, name, v, labels[v.name],
                                                 replicas[v.name], cm_name, plans[v.name])
                       for v in live]
        entries = [{"name": v.name, "version_id": v.version_id,
                    "weight": round(weights.get(v.name, 0.0), 6), "label": labels[v.name],
                    "replicas": replicas.get(v.name, 0), "shadow": v.name == plan.shadow}
                   for v in plan.variants]
        service = self.manifests.service(plan, name, entries, only)
        for manifest in (config_map, *deployments, service):
            self.validate(manifest)

        self.converge_key_secret(plan.endpoint)
        existing = {d["metadata"]["name"]: d for d in self.client.list("Deployment", name)}
        current_map = self.client.read("ConfigMap", cm_name)
        for key in (current_map or {}).get("data") or {}:
            config_map["data"].setdefault(key, None)  # plans of variants gone: removed
        self.client.converge(config_map, current_map)
        for manifest in deployments:
            self.client.converge(manifest, existing.get(manifest["metadata"]["name"]))
        self.client.converge(service, current, guarded=True)
        wanted = {d["metadata"]["name"] for d in deployments}
        for stale in sorted(set(existing) - wanted):
            self.client.delete("Deployment", stale)

    def observe(self, endpoint: str) -> ObservedState:
        name = self.manifests.name(endpoint)
        service = self.client.read("Service", name)
        if self.client.foreign(service):
            return self.foreign_state(endpoint)
        deployments = {(d["metadata"].get("labels") or {}).get(VARIANT_LABEL): d
                       for d in self.client.list("Deployment", name)}
        if service is None and not deployments:
            return ObservedState(endpoint=endpoint, exists=False)
        meta = (service or {}).get("metadata") or {}
        entries = recorded_variants(service)
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
        generation = recorded_generation(meta)
        refused = self._refused(name, generation, entries, deployments,
                                [v.name for v in observed if not v.ready]) if service else ""
        if service is None:
            detail = f"Service {name} is missing"
        elif refused or waiting:
            detail = refused or "waiting for ready replicas of " + ", ".join(waiting)
        else:
            detail = ""
        return ObservedState(
            # A refused plan is not what serves: which one does, the cluster does not record.
            endpoint=endpoint, exists=True, generation=None if refused else generation,
            ready=live_ready, variants=tuple(observed),
            url=f"http://{name}.{self.namespace}.svc" if service is not None else None,
            detail=detail, refused=refused,
            extra={"mode": "deployments", "name": name, "namespace": self.namespace,
                   "shadow": meta.get("annotations", {}).get(SHADOW_ANNOTATION),
                   "deployments": sorted(d["metadata"]["name"] for d in deployments.values())})

    def _refused(self, name: str, generation: int | None, entries: list[dict],
                 deployments: dict[str, dict], not_ready: list[str]) -> str:
        """Why the cluster will never run a variant of the recorded plan that is not ready
        (``refusals.py``); the pods are read only when a Deployment does not say."""
        pods: list[dict] | None = None
        for entry in entries:
            if entry.get("shadow") or entry["name"] not in not_ready:
                continue
            deployment = deployments.get(entry.get("label"))
            why = deployment_refusal(deployment)
            if not why and deployment is not None:
                if pods is None:
                    pods = self._pods(name)
                why = pod_refusal(deployment, [p for p in pods if (p["metadata"].get(
                    "labels") or {}).get(VARIANT_LABEL) == entry.get("label")])
            if why:
                return (f"Kubernetes refused plan {generation}: variant {entry['name']} "
                        f"(version {entry['version_id']}) does not run, {why}")
        return ""

    def _pods(self, name: str) -> list[dict]:
        """The endpoint's pods, or none when they cannot be listed (a refusal is then left
        to the Deployments' own conditions)."""
        try:
            return self.client.pods({"app": name})
        except (BackendError, BackendUnavailable) as e:
            log.info("cannot list the pods of %s: %s", name, e)
            return []

    def delete_workloads(self, name: str) -> None:
        for deployment in self.client.list("Deployment", name):
            self.client.delete("Deployment", deployment["metadata"]["name"])
        self.client.delete("Service", name)

    def pod_labels(self, endpoint: str, variant: str) -> dict[str, str] | None:
        return {"app": self.manifests.name(endpoint), VARIANT_LABEL: variant_label(variant)}


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
