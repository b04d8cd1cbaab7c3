"""KServe mode (the default): one ``serving.kserve.io/v1beta1`` InferenceService.

KServe holds ONE predictor spec and splits traffic with
``spec.predictor.canaryTrafficPercent`` between the latest revision and the last rolled-out
one, so:

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
deleted. The annotations record names, version ids, effective weights, roles and
ConfigMaps. Readiness comes from ``status.conditions[type=Ready]`` being ``True`` for the
current ``metadata.generation``; an object without status (no controller has reconciled it
yet) is reported not ready. A latest revision KServe reports failed (``refusals.py``) makes
the plan ``refused``, with no generation served (the one before serves, unrecorded), and the
stable still ready where Knative keeps a ready revision. Canary needs KServe's Serverless
(Knative) deployment mode.
"""

from __future__ import annotations

from ops.backends.base import BackendError, ObservedState, ObservedVariant
from ops.backends.kubernetes.manifests import (
    fingerprint,
    recorded_generation,
    recorded_variants,
    single_variant_plan,
)
from ops.backends.kubernetes.mode import Mode
from ops.backends.kubernetes.names import FINGERPRINT_ANNOTATION, PLAN_KEY
from ops.backends.kubernetes.refusals import inference_service_refusal
from ops.plan import ServingPlan, Variant


class KServeMode(Mode):
    name = "kserve"
    main_kind = "InferenceService"

    def converge(self, plan: ServingPlan, current: dict | None) -> None:
        name = self.manifests.name(plan.endpoint)
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
        record = recorded_variants(current)
        stable, predictor, percent = self._roles(plan, live, record, current)

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

        config_maps = [self.manifests.plan_config_map(
            cm, name, plan.endpoint, {PLAN_KEY: single_variant_plan(plan, v).to_json()},
            {FINGERPRINT_ANNOTATION: fingerprint(v)}) for v, _, cm in roles]
        isvc = self.manifests.inference_service(plan, name, predictor, predictor_map, percent,
                                                entries)
        for manifest in (*config_maps, isvc):
            self.validate(manifest)

        self.converge_key_secret(plan.endpoint)
        for manifest in config_maps:
            self.client.converge(manifest,
                                 self.client.read("ConfigMap", manifest["metadata"]["name"]))
        self.client.converge(isvc, current, guarded=True)
        keep = {cm for _, _, cm in roles}
        for config_map in self.client.list("ConfigMap", name):
            if config_map["metadata"]["name"] not in keep:
                self.client.delete("ConfigMap", config_map["metadata"]["name"])

    def _roles(self, plan: ServingPlan, live: list[Variant], record: list[dict],
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

    def observe(self, endpoint: str) -> ObservedState:
        name = self.manifests.name(endpoint)
        isvc = self.client.read("InferenceService", name)
        if isvc is None:
            return ObservedState(endpoint=endpoint, exists=False)
        if self.client.foreign(isvc):
            return self.foreign_state(endpoint)
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
        refused = _refused(isvc)
        # Knative keeps routing to the last revision that was ready when the latest fails.
        previous_ready = ready or bool(refused and predictor.get("latestReadyRevision"))
        if not status:
            detail = "no status yet: no controller has reconciled the InferenceService"
        elif not current:
            detail = "KServe has not reconciled the latest spec yet"
        else:
            detail = refused or ready_condition.get("message") or ready_condition.get("reason") \
                or ""
        variants = tuple(
            ObservedVariant(name=e["name"], version_id=int(e["version_id"]),
                            weight=float(e["weight"]),
                            ready=latest_ready if e.get("role") == "latest" else previous_ready,
                            replicas=int(e.get("replicas", 1)))
            for e in recorded_variants(isvc))
        spec = (isvc.get("spec") or {}).get("predictor") or {}
        return ObservedState(
            # A refused plan is not what serves: which one does, KServe does not record.
            endpoint=endpoint, exists=True,
            generation=None if refused else recorded_generation(meta), ready=ready,
            variants=variants, url=status.get("url"), detail=detail, refused=refused,
            extra={"mode": "kserve", "name": name, "namespace": self.namespace,
                   "canary_traffic_percent": spec.get("canaryTrafficPercent"),
                   "traffic": predictor.get("traffic") or []})

    def delete_workloads(self, name: str) -> None:
        self.client.delete("InferenceService", name)


    def pod_labels(self, endpoint: str, variant: str) -> dict[str, str] | None:
        """The Knative revision the variant runs as: the InferenceService's
        ``latestCreatedRevision`` for the newest predictor, ``latestRolledoutRevision`` for
        the one still holding the rest of the traffic."""
        isvc = self.client.read("InferenceService", self.manifests.name(endpoint)) or {}
        predictor = (((isvc.get("status") or {}).get("components") or {})
                     .get("predictor") or {})
        role = next((e.get("role") for e in recorded_variants(isvc)
                     if e.get("name") == variant), None)
        revision = predictor.get("latestCreatedRevision" if role == "latest"
                                 else "latestRolledoutRevision")
        if not role or not revision:
            return None
        return {"serving.knative.dev/revision": revision}


def _refused(isvc: dict) -> str:
    """The refusal of the plan recorded on ``isvc``, naming the variant its latest revision
    runs (``refusals.py`` says when KServe has refused one)."""
    why = inference_service_refusal(isvc)
    if not why:
        return ""
    generation = recorded_generation(isvc.get("metadata") or {})
    latest = next((e for e in recorded_variants(isvc) if e.get("role") == "latest"), None)
    variant = (f"variant {latest['name']} (version {latest['version_id']})" if latest
               else "its predictor")
    return f"KServe refused plan {generation}: {variant} does not serve, {why}"
