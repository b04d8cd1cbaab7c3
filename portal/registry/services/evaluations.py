"""Measured metrics: every ready version measured by a worker on its project's evaluation
datasets (held out, with the label).

A pair is measured once a version is ready and once an evaluation dataset is profiled, for
every pair whose dataset holds the version's inputs and the label (``queue_evaluations``).
The result is stored per (version, dataset): both are immutable, so it never goes stale.
``evidence`` gives what a gate judges: the measured figures where they exist, the
declared ones otherwise, each marked with where it came from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from ops import evaluation as ops_evaluation
from ops.exceptions import OpsError, TransientError
from ops.redact import without_paths
from ops.schema import parse_input_schema
from portal.prepared import Prepared
from portal.queue import enqueue
from portal.registry.choices import DatasetPurpose, EvaluationStatus, ProfileStatus, VersionStatus
from portal.registry.models import Dataset, Evaluation, ModelVersion

log = logging.getLogger(__name__)


def _input_names(version: ModelVersion) -> list[str]:
    return [f.name for f in parse_input_schema(version.input_schema)]


def missing_inputs(dataset: Dataset, version: ModelVersion) -> list[str]:
    """The version's inputs (and the label) the dataset lacks."""
    columns = {c["name"] for c in dataset.columns or []}
    return [n for n in [*_input_names(version), dataset.target] if n not in columns]


def fits(dataset: Dataset, version: ModelVersion) -> bool:
    """Whether the dataset measures the version: an evaluation dataset of its model, profiled,
    holding every input and the label."""
    return (dataset.is_evaluation and dataset.profile_status == ProfileStatus.READY
            and dataset.model_id == version.model_id and bool(dataset.target)
            and not missing_inputs(dataset, version))


def queue_evaluations(*, version: ModelVersion | None = None,
                      dataset: Dataset | None = None) -> int:
    """Create and queue the measurements a newly ready version or a newly profiled
    evaluation dataset calls for (none exists twice); how many were queued."""
    if version is not None:
        # An archived evaluation dataset measures no new version (decision 58).
        datasets = Dataset.objects.filter(model_id=version.model_id,
                                          purpose=DatasetPurpose.EVALUATION,
                                          profile_status=ProfileStatus.READY,
                                          archived_at__isnull=True)
        pairs = [(version, d) for d in datasets if fits(d, version)]
    else:
        versions = ModelVersion.objects.filter(model_id=dataset.model_id,
                                               status=VersionStatus.READY).select_related(
            "model")
        pairs = [(v, dataset) for v in versions if fits(dataset, v)]
    return sum(_queue(v, d) for v, d in pairs)


def _queue(version: ModelVersion, dataset: Dataset) -> int:
    try:
        with transaction.atomic():
            evaluation, created = Evaluation.objects.get_or_create(version=version,
                                                                   dataset=dataset)
    except IntegrityError:  # another worker created it first: it queues it
        return 0
    if created:
        enqueue("workers.registry.evaluate_version", evaluation.pk,
                recovery="the periodic requeue sends it again")
    return int(created)


def queue_missing() -> int:
    """Measurements no worker was asked for (a version that became ready while its model's
    evaluation dataset was being profiled): created and queued (the periodic requeue)."""
    queued = 0
    for dataset in Dataset.objects.filter(purpose=DatasetPurpose.EVALUATION,
                                          profile_status=ProfileStatus.READY,
                                          archived_at__isnull=True).exclude(model=None):
        if ModelVersion.objects.filter(model_id=dataset.model_id,
                                       status=VersionStatus.READY).exclude(
                evaluations__dataset=dataset).exists():
            queued += queue_evaluations(dataset=dataset)
    return queued


def labelled_rows(version: ModelVersion, dataset: Dataset):
    """The dataset's inputs (in the version's order) and labels, rows missing any dropped."""
    from portal.registry.services.datasets import read_linked_dataset

    names = _input_names(version)
    frame = read_linked_dataset(dataset)[[*names, dataset.target]].dropna()
    return frame[names], frame[dataset.target]


CLAIM_SECONDS = 360  # longer than the task's hard limit: a claim older than this is stale


def _claim(evaluation_id: int) -> bool:
    """Only one worker measures a pair at a time (a requeued copy finds it claimed)."""
    now = timezone.now()
    stale = now - timedelta(seconds=CLAIM_SECONDS)
    return bool(Evaluation.objects.filter(pk=evaluation_id, status=EvaluationStatus.PENDING)
                .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=stale))
                .update(claimed_at=now))


def evaluate(evaluation_id: int) -> Evaluation | None:
    """Measure one version on one evaluation dataset (runs in a worker): the model loaded as
    validation loads it, scored by ``ops.evaluation.measure``. Whatever stops it — a model
    that raises anything, labels it never learned — is recorded as failed with the reason,
    and its gates fail."""
    from portal.registry.services.explanations import load_version_model

    evaluation = (Evaluation.objects.select_related("version__model__project", "dataset")
                  .filter(pk=evaluation_id).first())
    if evaluation is None or evaluation.status != EvaluationStatus.PENDING \
            or not _claim(evaluation_id):
        return evaluation
    update = {"status": EvaluationStatus.FAILED, "computed_at": timezone.now()}
    try:
        X, y = labelled_rows(evaluation.version, evaluation.dataset)
        model = load_version_model(evaluation.version)
        metrics = ops_evaluation.measure(model, X, y, task=evaluation.version.model.task)
        update.update(status=EvaluationStatus.READY, metrics=metrics, rows=len(X), reason="")
    except TransientError:  # the store away: free the claim, the task is tried again
        Evaluation.objects.filter(pk=evaluation.pk).update(claimed_at=None)
        raise
    except OpsError as e:
        update["reason"] = without_paths(getattr(e, "detail", None) or str(e))
    except Exception as e:  # noqa: BLE001 - a model may raise anything; say what, and fail
        log.info("evaluation %s failed", evaluation_id, exc_info=True)
        update["reason"] = f"{type(e).__name__}: {without_paths(str(e))}"
    if Evaluation.objects.filter(pk=evaluation.pk, status=EvaluationStatus.PENDING).update(
            **update):
        enqueue("workers.releases.judge_measured", evaluation.version_id)
    evaluation.refresh_from_db()
    return evaluation


def evaluation_timed_out(evaluation_id: int, reason: str) -> None:
    Evaluation.objects.filter(pk=evaluation_id, status=EvaluationStatus.PENDING).update(
        status=EvaluationStatus.FAILED, reason=f"measuring {reason}",
        computed_at=timezone.now())


@dataclass(frozen=True)
class Evidence:
    """What a gate judges for one version: its metrics and where each came from."""

    metrics: dict
    sources: dict = field(default_factory=dict)  # metric: "measured" | "declared"
    dataset: Dataset | None = None
    status: str = ""  # the measurement's: "" (no evaluation dataset), pending, ready, failed
    reason: str = ""
    # What the portal measures for the version's task: where an evaluation dataset exists,
    # these are judged only as measured (a declared one is not evidence).
    measurable: frozenset = frozenset()

    @property
    def measuring(self) -> bool:
        return self.status == EvaluationStatus.PENDING


def evaluation_dataset(version: ModelVersion) -> Dataset | None:
    """The evaluation dataset a version of this model is judged on: its model's newest one
    (profiled, not archived); None when the model has none."""
    return (Dataset.objects.filter(model_id=version.model_id, purpose=DatasetPurpose.EVALUATION,
                                   profile_status=ProfileStatus.READY, archived_at__isnull=True)
            .order_by("-created_at", "-pk").first())


def _measurement(version: ModelVersion, dataset: Dataset) -> Evaluation | None:
    """The version's measurement on the dataset; one that should exist and does not yet (a
    race with profiling; the periodic requeue creates it, ``queue_missing``) reads as being
    measured. None when the dataset cannot measure it. Reading never writes."""
    found = Evaluation.objects.filter(version=version, dataset=dataset).first()
    if found is None and version.status == VersionStatus.READY and fits(dataset, version):
        return Evaluation(version=version, dataset=dataset, status=EvaluationStatus.PENDING)
    return found


def evidence(version: ModelVersion, dataset: Dataset | None) -> Evidence:
    """The version's metrics as gates judge them on ``dataset``: measured figures over the
    declared ones (marked), or the declared ones alone without an evaluation dataset."""
    declared = dict(version.metrics or {})
    sources = dict.fromkeys(declared, "declared")
    if dataset is None:
        return Evidence(declared, sources)
    measurable = ops_evaluation.MEASURABLE.get(version.model.task, frozenset())
    found = _measurement(version, dataset)
    if found is None:
        lacking = ", ".join(missing_inputs(dataset, version)[:5])
        return Evidence(declared, sources, dataset, EvaluationStatus.FAILED,
                        f"{dataset.name} does not hold its inputs ({lacking})" if lacking
                        else f"{dataset.name} does not measure it", measurable)
    if found.is_ready:
        sources.update(dict.fromkeys(found.metrics, "measured"))
        return Evidence({**declared, **found.metrics}, sources, dataset, found.status,
                        measurable=measurable)
    return Evidence(declared, sources, dataset, found.status, found.reason, measurable)


@Prepared
def _evaluations_of(version_id: int):
    return (Evaluation.objects.filter(version_id=version_id).select_related("dataset")
            .defer("dataset__columns", "dataset__profile"))


def metric_table(version: ModelVersion) -> dict:
    """The version page's metrics: one row per metric, the declared figure beside what was
    measured on each evaluation dataset (newest first), and each measurement's state."""
    found = _evaluations_of.rows(version.pk)
    for evaluation in found:  # the version at hand, as its related manager would give it
        evaluation.version = version
    names = list(version.metrics or {})
    for evaluation in found:
        names += [n for n in evaluation.metrics if n not in names]
    rows = [{"name": name, "declared": (version.metrics or {}).get(name),
             "measured": [e.metrics.get(name) for e in found]} for name in names]
    return {"evaluations": found, "rows": rows}
