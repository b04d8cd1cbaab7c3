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

from django.db import IntegrityError, transaction
from django.utils import timezone

from ops import evaluation as ops_evaluation
from ops.exceptions import OpsError
from ops.redact import without_paths
from ops.schema import parse_input_schema
from portal.queue import enqueue
from portal.registry.choices import DatasetPurpose, EvaluationStatus, ProfileStatus, VersionStatus
from portal.registry.models import Dataset, Evaluation, ModelVersion

log = logging.getLogger(__name__)


def _input_names(version: ModelVersion) -> list[str]:
    return [f.name for f in parse_input_schema(version.input_schema)]


def fits(dataset: Dataset, version: ModelVersion) -> bool:
    """Whether the dataset can measure the version: it holds every input and the label."""
    columns = {c["name"] for c in dataset.columns or []}
    return (dataset.is_evaluation and dataset.profile_status == ProfileStatus.READY
            and dataset.project_id == version.model.project_id and bool(dataset.target)
            and dataset.target in columns and set(_input_names(version)) <= columns)


def queue_evaluations(*, version: ModelVersion | None = None,
                      dataset: Dataset | None = None) -> int:
    """Create and queue the measurements a newly ready version or a newly profiled
    evaluation dataset calls for; how many were queued."""
    if version is not None:
        datasets = Dataset.objects.filter(project_id=version.model.project_id,
                                          purpose=DatasetPurpose.EVALUATION,
                                          profile_status=ProfileStatus.READY)
        pairs = [(version, d) for d in datasets if fits(d, version)]
    else:
        versions = ModelVersion.objects.filter(model__project_id=dataset.project_id,
                                               status=VersionStatus.READY).select_related(
            "model")
        pairs = [(v, dataset) for v in versions if fits(dataset, v)]
    queued = 0
    for v, d in pairs:
        try:
            with transaction.atomic():
                evaluation, created = Evaluation.objects.get_or_create(version=v, dataset=d)
        except IntegrityError:  # another worker created it first: it queues it
            continue
        if created:
            enqueue("workers.registry.evaluate_version", evaluation.pk,
                    recovery="the periodic requeue sends it again")
            queued += 1
    return queued


def labelled_rows(version: ModelVersion, dataset: Dataset):
    """The dataset's inputs (in the version's order) and labels, rows missing any dropped."""
    from portal.registry.services.datasets import read_linked_dataset

    names = _input_names(version)
    frame = read_linked_dataset(dataset)[[*names, dataset.target]].dropna()
    return frame[names], frame[dataset.target]


def evaluate(evaluation_id: int) -> Evaluation | None:
    """Measure one version on one evaluation dataset (runs in a worker): the model loaded as
    validation loads it, scored by ``ops.evaluation.measure``; a model that fails on the
    rows is recorded as failed with the reason, and its gates fail."""
    from portal.registry.services.explanations import load_version_model

    evaluation = (Evaluation.objects.select_related("version__model__project", "dataset")
                  .filter(pk=evaluation_id).first())
    if evaluation is None or evaluation.status != EvaluationStatus.PENDING:
        return evaluation
    update = {"status": EvaluationStatus.FAILED, "computed_at": timezone.now()}
    try:
        X, y = labelled_rows(evaluation.version, evaluation.dataset)
        model = load_version_model(evaluation.version)
        metrics = ops_evaluation.measure(model, X, y, task=evaluation.version.model.task)
        update.update(status=EvaluationStatus.READY, metrics=metrics, rows=len(X), reason="")
    except OpsError as e:
        update["reason"] = without_paths(getattr(e, "detail", None) or str(e))
    except (KeyError, ValueError, TypeError, AttributeError) as e:  # a model that breaks
        log.info("evaluation %s failed", evaluation_id, exc_info=True)
        update["reason"] = f"{type(e).__name__}: {without_paths(str(e))}"
    # Claim: only the first worker to finish records the figures.
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
    status: str = ""  # the measurement's: "" (none), pending, ready, failed
    reason: str = ""

    @property
    def measuring(self) -> bool:
        return self.status == EvaluationStatus.PENDING


def evaluation_dataset(version: ModelVersion) -> Dataset | None:
    """The evaluation dataset a version is judged on: the newest one measuring it."""
    found = (Evaluation.objects.filter(version=version).select_related("dataset")
             .order_by("-dataset__created_at", "-dataset_id").first())
    return found.dataset if found else None


def evidence(version: ModelVersion, dataset: Dataset | None) -> Evidence:
    """The version's metrics as gates judge them on ``dataset``: measured figures over the
    declared ones (marked), or the declared ones alone without a measurement."""
    declared = dict(version.metrics or {})
    sources = dict.fromkeys(declared, "declared")
    found = (Evaluation.objects.filter(version=version, dataset=dataset).first()
             if dataset is not None else None)
    if found is None:
        return Evidence(declared, sources)
    if found.is_ready:
        sources.update(dict.fromkeys(found.metrics, "measured"))
        return Evidence({**declared, **found.metrics}, sources, dataset, found.status)
    return Evidence(declared, sources, dataset, found.status, found.reason)


def metric_table(version: ModelVersion) -> dict:
    """The version page's metrics: one row per metric, the declared figure beside what was
    measured on each evaluation dataset (newest first), and each measurement's state."""
    found = list(version.evaluations.select_related("dataset"))
    names = list(version.metrics or {})
    for evaluation in found:
        names += [n for n in evaluation.metrics if n not in names]
    rows = [{"name": name, "declared": (version.metrics or {}).get(name),
             "measured": [e.metrics.get(name) for e in found]} for name in names]
    return {"evaluations": found, "rows": rows}
