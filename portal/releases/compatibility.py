"""Whether a release candidate can answer the callers of what an environment serves now.

Callers send the rows the serving version's input schema describes, by name or by position;
a candidate declaring other inputs answers every one of them 400 (a version trained on 10
features, uploaded as a version of a 30-feature model, once did just that as an approved
canary). So the candidate's schema is compared with that of each version serving
(``ops.schema.interface_differences``) when a release is requested, and again when its
rollout starts, before any traffic: what serves may have changed in between.

A requester may mark a release a *breaking interface change*: it is then not refused for
its differences, but it may go out only directly or by blue/green
(``ops.rollout.spec.GRADUAL_STRATEGIES`` would send callers of the old interface to the new
one while the old one still serves), and approvers must acknowledge it.
"""

from __future__ import annotations

from dataclasses import replace

from django.db import transaction

from ops import rollout
from ops.rollout.spec import GRADUAL_STRATEGIES
from ops.schema import SchemaError, interface_differences, parse_input_schema
from portal.errors import ValidationFailed
from portal.registry.models import ModelVersion
from portal.releases import deployments
from portal.releases.models import Deployment, Environment

#: Differences named in an error; the rest are counted.
SHOWN = 12
# A rollout under way serves its candidate beside the stable; a pending one serves nothing.
LIVE = [s for s in deployments.ACTIVE if s != rollout.Status.PENDING]


def serving_versions(environment: Environment, model) -> list[ModelVersion]:
    """The versions ``environment`` serves for ``model`` now: the last rollout that
    succeeded (``deployments.serving_version``), and the candidate of a rollout under way.

    The one place that says what serves: what the backend observes could replace it here.
    """
    versions = []
    stable = deployments.serving_version(environment, model)
    if stable is not None:
        versions.append(stable)
    live = (Deployment.objects.filter(environment=environment, model=model, status__in=LIVE)
            .select_related("candidate").order_by("-pk").first())
    if live is not None and live.candidate_id not in {v.pk for v in versions}:
        versions.append(live.candidate)
    return versions


def _features(version: ModelVersion):
    try:
        return parse_input_schema(version.input_schema)
    except SchemaError:  # registration refuses these; a row from before has nothing to compare
        return None


def interface_changes(version: ModelVersion, environment: Environment) -> list[dict]:
    """How ``version``'s inputs differ from each version ``environment`` serves for its
    model: ``[{"version": 3, "differences": ["missing feature age (position 2)", ...]}]``,
    only the versions that differ; empty where nothing serves yet."""
    candidate = _features(version)
    changes = []
    for serving in serving_versions(environment, version.model):
        features = _features(serving)
        if candidate is None or features is None or serving.pk == version.pk:
            continue
        differences = interface_differences(features, candidate)
        if differences:
            changes.append({"version": serving.number, "differences": differences})
    return changes


def describe(version: ModelVersion, environment: Environment, changes: list[dict]) -> str:
    """One sentence per serving version that differs, naming at most ``SHOWN`` differences."""
    parts = []
    for change in changes:
        differences = change["differences"]
        shown = "; ".join(differences[:SHOWN])
        more = f"; and {len(differences) - SHOWN} more" if len(differences) > SHOWN else ""
        parts.append(f"v{version.number}'s inputs differ from those of v{change['version']}, "
                     f"which {environment.name} serves now: {shown}{more}.")
    return " ".join(parts)


def check_request(version: ModelVersion, environment: Environment, strategy: str,
                  breaking_change: bool) -> list[dict]:
    """Refuse a release whose inputs differ from what serves now unless it is marked a
    breaking interface change, and a breaking one by a gradual strategy. Returns the
    differences, which the request keeps for its approvers."""
    if breaking_change and strategy in GRADUAL_STRATEGIES:
        raise ValidationFailed(
            f"a breaking interface change cannot go out by {rollout.Strategy(strategy).label}:"
            " callers of the old interface would be sent to the new one while the old one "
            "still serves; choose direct or blue/green", code="breaking_change_strategy",
            field="strategy")
    changes = interface_changes(version, environment)
    if changes and not breaking_change:
        raise ValidationFailed(
            f"{describe(version, environment, changes)} Callers of what serves now would get "
            f"errors from v{version.number}. Declare the inputs the serving version takes, or mark the "
            "release a breaking interface change (breaking_change) and release it directly "
            "or by blue/green.", code="incompatible_interface", field="version")
    return changes


def stopped_before_traffic(deployment: Deployment) -> bool:
    """Fail a rollout about to start whose candidate's inputs differ from what serves now
    (checked at request time too; what serves may have changed since), unless its request
    marked a breaking interface change. True when it was stopped: nothing was applied.

    Called in the transaction that creates the deployment, so a deployment is never
    committed unchecked: were this to fail, no deployment would be left for reconcile to
    advance, and reconcile would start the approved request again instead."""
    request = deployment.request
    if request is None or request.breaking_change:
        return False
    changes = interface_changes(deployment.candidate, deployment.environment)
    if not changes:
        return False
    reason = (f"not started, before any traffic: "
              f"{describe(deployment.candidate, deployment.environment, changes)} It was not "
              "marked a breaking interface change; request it again as one (direct or "
              "blue/green), or release a version with the serving inputs")
    state = rollout.RolloutState.from_dict(deployment.state)
    failed = replace(state, status=rollout.Status.FAILED, step_id=state.step_id + 1,
                     reason=reason)
    decision = rollout.Decision(failed, None, None, rollout.Event.FAILED, reason)
    # Recorded as the orchestrator records its own decisions (claimed from the step it saw,
    # logged, announced), so the rollout's page and webhooks say why it failed.
    with transaction.atomic():
        if deployments._claim(deployment, state.step_id, decision):
            deployments._record(deployment, decision)
            deployments._notify(deployment, state, decision)
    return True
