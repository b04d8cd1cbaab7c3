"""What a release request's candidate is compared with, kept current until it is decided.

The gates and the release diff compare the candidate with the version that serves the
target environment now (the stable a rollout would start from), or, where nothing serves
yet, with the model's champion. A request judged against v2 once stayed judged against v2
after v4 had replaced it, and was approved on that stale evidence. Now an approval looks
again: if what serves has changed since the gates were judged, they are judged again (and
the diff recomputed) and the approval is refused until an approver has looked at them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from ops import gates as ops_gates
from portal.audit import services as audit
from portal.queue import enqueue
from portal.registry.models import Alias, ModelVersion
from portal.releases.models import ApprovalRequest, Environment


def champion_of(version: ModelVersion) -> ModelVersion | None:
    alias = Alias.objects.filter(model_id=version.model_id, name="champion").select_related(
        "version").first()
    return alias.version if alias else None


def target_of(version: ModelVersion, environment: Environment) -> ModelVersion | None:
    """The version the candidate is compared with: what serves the environment now, or the
    champion where nothing does."""
    from portal.releases.deployments import serving_version

    return serving_version(environment, version.model) or champion_of(version)


def serving(environment: Environment, version: ModelVersion) -> bool:
    """Whether ``version`` is what serves ``environment`` (else it is the champion)."""
    from portal.releases.deployments import serving_version

    found = serving_version(environment, version.model)
    return found is not None and found.pk == version.pk


def judge(version: ModelVersion, environment: Environment,
          target: ModelVersion | None) -> tuple[list[dict], bool]:
    """The environment's gates on ``version`` against ``target``: (results, all passed)."""
    results = ops_gates.evaluate(environment.gates, version.metrics,
                                 target.metrics if target and target.pk != version.pk
                                 else None, model=version.model.name)
    return [r.to_dict() for r in results], all(r.passed for r in results)


def queue_diff(request: ApprovalRequest) -> None:
    """Queue the release diff against the request's comparison target (a worker computes it)."""
    if request.champion_id and request.champion_id != request.version_id \
            and settings.MODELGATE_EXPLAIN_VERSIONS:
        ApprovalRequest.objects.filter(pk=request.pk).update(release_diff={"status": "pending"})
        enqueue("workers.releases.compute_release_diff", request.pk,
                recovery="the page says the diff is pending")


def refresh(request: ApprovalRequest) -> tuple[ModelVersion | None, ModelVersion] | None:
    """Judge the request again if what it is compared with has changed: (the old target,
    the new one), after saving the new gates and queueing a new diff; None if current."""
    target = target_of(request.version, request.environment)
    if target is None or target.pk == request.champion_id:
        return None
    with transaction.atomic():
        locked = ApprovalRequest.objects.select_for_update().get(pk=request.pk)
        old = locked.champion
        results, passed = judge(locked.version, locked.environment, target)
        ApprovalRequest.objects.filter(pk=locked.pk).update(
            champion=target, gate_results=results, gates_passed=passed)
        audit.record(None, "approval_request.compare_again", locked,
                     project_id=locked.environment.project_id,
                     changes={"compared_with": audit.change(old.number if old else None,
                                                            target.number),
                              "gates_passed": audit.change(locked.gates_passed, passed)})
        locked.champion = target
        queue_diff(locked)
    request.refresh_from_db()
    return old, target
