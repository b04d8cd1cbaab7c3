"""What a release request's candidate is compared with, kept current until it is decided.

The gates and the release diff compare the candidate with the version that serves the
target environment now (the stable a rollout would start from), or, where nothing serves
yet, with the model's champion. A request judged against v2 once stayed judged against v2
after v4 had replaced it, and was approved on that stale evidence. Now an approval looks
again: if what serves has changed since the gates were judged, they are judged again (and
the diff recomputed) and the approval is refused until an approver has looked at them.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ops import gates as ops_gates
from ops.evaluation import labels_like
from portal.audit import services as audit
from portal.queue import enqueue
from portal.registry.choices import EvaluationStatus
from portal.registry.models import Alias, ModelVersion
from portal.registry.services import evaluations
from portal.releases.choices import RequestStatus
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


def _unmeasured(version: ModelVersion, found: evaluations.Evidence) -> str:
    """Why ``version``'s measured figures are missing, or "" when they are not."""
    if found.measuring:
        return (f"v{version.number} is being measured on {found.dataset.name} (a worker is on "
                "it); the gates are judged on the measured figures")
    if found.status == EvaluationStatus.FAILED:
        return f"v{version.number} could not be measured on {found.dataset.name}: {found.reason}"
    return ""


def _side(version: ModelVersion, found: evaluations.Evidence) -> ops_gates.Evidence:
    return ops_gates.Evidence(found.metrics, found.sources, _unmeasured(version, found),
                              found.measurable)


def judge(version: ModelVersion, environment: Environment,
          target: ModelVersion | None) -> tuple[list[dict], bool]:
    """The environment's gates on ``version`` against ``target``: (results, all passed).

    Both are judged on the same evaluation dataset (the newest of the model's): measured
    figures, declared ones only for what the portal does not measure, each result saying
    which; a side whose measurement is under way or failed fails the rules it enters."""
    dataset = evaluations.evaluation_dataset(version)
    mine = evaluations.evidence(version, dataset)
    theirs = (evaluations.evidence(target, dataset) if target and target.pk != version.pk
              else None)
    results = ops_gates.evaluate(environment.gates, _side(version, mine),
                                 _side(target, theirs) if theirs else None,
                                 model=version.model.name)
    documents = [{**r.to_dict(), "dataset": dataset.name if dataset else ""} for r in results]
    return documents, all(r.passed for r in results)


def judge_measured(version_id: int) -> int:
    """A measurement finished: judge again the open requests it bears on (the version's own,
    and those comparing with it); how many changed."""
    changed = 0
    for request in (ApprovalRequest.objects.filter(status=RequestStatus.OPEN)
                    .filter(Q(version_id=version_id) | Q(champion_id=version_id))
                    .select_related("version__model", "environment", "champion")):
        changed += rejudge(request)
    return changed


def stale(locked: ApprovalRequest) -> bool:
    """Whether the gates of a request (locked by the caller, about to be approved) would be
    judged differently now: what serves or what was measured changed since. The approval
    checks this under its lock, so nothing lands between the look and the decision."""
    target = target_of(locked.version, locked.environment)
    if target is not None and target.pk != locked.champion_id:
        return True
    return judge(locked.version, locked.environment, locked.champion)[0] != locked.gate_results


def rejudge(request: ApprovalRequest) -> int:
    """Judge an open request's gates again on the evidence there is now; 1 if they changed
    (saved and audited), else 0."""
    with transaction.atomic():
        locked = ApprovalRequest.objects.select_for_update(of=("self",)).select_related(
            "version__model", "environment", "champion").get(pk=request.pk)
        if locked.status != RequestStatus.OPEN:
            return 0
        results, passed = judge(locked.version, locked.environment, locked.champion)
        if results == locked.gate_results:
            return 0
        ApprovalRequest.objects.filter(pk=locked.pk).update(
            gate_results=results, gates_passed=passed, judged_at=timezone.now())
        audit.record(None, "approval_request.judge_measured", locked,
                     project_id=locked.environment.project_id,
                     changes={"gates_passed": audit.change(locked.gates_passed, passed)})
    return 1


@dataclass
class DiffRows:
    """The rows a release diff compares the two versions on, and the figures it shows."""

    inputs: object  # DataFrame, the candidate's inputs in schema order
    labels: object | None  # the true labels (evaluation data), else None
    name: str
    kind: str  # "evaluation" (held out, labelled) or "reference" (the candidate's training data)
    dataset: object = None

    def candidate_metrics(self, version: ModelVersion) -> dict:
        return evaluations.evidence(version, self.dataset).metrics


def diff_rows(version: ModelVersion) -> DiffRows:
    """The evaluation dataset the gates judge on, with its labels; the candidate's reference
    data where the project has no evaluation dataset for it."""
    from portal.registry.services import reference_inputs

    limit = settings.MODELGATE_RELEASE_DIFF_ROWS
    dataset = evaluations.evaluation_dataset(version)
    if dataset is not None:
        inputs, labels = evaluations.labelled_rows(version, dataset)
        labels = labels_like(labels.head(limit), version.classes or [])
        return DiffRows(inputs.head(limit), labels, dataset.name, "evaluation", dataset)
    frame = reference_inputs(version)
    if frame is None:
        raise ValueError("the version has no evaluation or reference dataset to compare the "
                         "two on")
    return DiffRows(frame.head(limit), None, version.dataset.name, "reference")


def metric_deltas(request: ApprovalRequest) -> list[dict]:
    """The candidate's figures beside those of what it is compared with, on the same evaluation
    dataset, each marked measured or declared (the request page's table)."""
    from explainability.diff import metric_changes

    if request.champion is None:
        return []
    dataset = evaluations.evaluation_dataset(request.version)
    mine = evaluations.evidence(request.version, dataset)
    theirs = evaluations.evidence(request.champion, dataset)
    return [{**row, "source": mine.sources.get(row["metric"], ""),
             "champion_source": theirs.sources.get(row["metric"], "")}
            for row in metric_changes(mine.metrics, theirs.metrics)]


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
            champion=target, gate_results=results, gates_passed=passed,
            judged_at=timezone.now())
        audit.record(None, "approval_request.compare_again", locked,
                     project_id=locked.environment.project_id,
                     changes={"compared_with": audit.change(old.number if old else None,
                                                            target.number),
                              "gates_passed": audit.change(locked.gates_passed, passed)})
        locked.champion = target
        queue_diff(locked)
    request.refresh_from_db()
    return old, target
