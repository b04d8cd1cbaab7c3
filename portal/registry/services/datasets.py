"""Datasets: upload, profiling by a worker, and reading them back within the limits."""

from __future__ import annotations

import uuid
from typing import BinaryIO

from django.conf import settings
from django.db import transaction

from ops import artifacts as ops_artifacts
from ops import profile as ops_profile
from ops.exceptions import DatasetError
from ops.schema import parse_input_schema
from ops.storage import TooLarge
from portal.accounts.choices import Role
from portal.accounts.services import require_role
from portal.audit import services as audit
from portal.errors import Conflict, PayloadTooLarge, ValidationFailed
from portal.queue import enqueue
from portal.registry.choices import DatasetPurpose, ProfileStatus
from portal.registry.models import Dataset, ModelVersion, Project, RegisteredModel
from portal.registry.services.archive import lock_open, refuse_archived
from portal.registry.services.base import _full_clean
from portal.registry.storage import get_store


def upload_dataset(user, project: Project, *, name: str, file: BinaryIO, filename: str = "",
                   target: str = "", description: str = "",
                   purpose: str = DatasetPurpose.REFERENCE,
                   model: RegisteredModel | None = None) -> Dataset:
    """Store a dataset and queue its profile. An evaluation dataset (held out, with its label
    column) names the model it measures; every version of that model whose inputs it holds
    is then measured on it, and the gates judge those figures. It is the evidence releases
    are judged on, so approvers (not whoever uploads the versions) choose it."""
    if purpose not in DatasetPurpose.values:
        raise ValidationFailed(f"purpose must be one of {', '.join(DatasetPurpose.values)}",
                               field="purpose")
    evaluation = purpose == DatasetPurpose.EVALUATION
    require_role(user, project, Role.APPROVER if evaluation else Role.CONTRIBUTOR,
                 "upload evaluation datasets" if evaluation else "upload datasets")
    refuse_archived(project)
    if model is not None and model.project_id != project.pk:
        raise ValidationFailed(f"model {model.name} is not in project {project.slug}",
                               field="model")
    try:
        fmt = ops_profile.detect_dataset_format(ops_artifacts.read_head(file, 8), filename)
    except DatasetError as e:
        raise ValidationFailed(e.detail, code=e.code, field="file") from e
    dataset = Dataset(project=project, name=name, description=description, target=target,
                      purpose=purpose, model=model if evaluation else None, format=fmt,
                      uri="pending", sha256="0" * 64, created_by=user)
    _full_clean(dataset, exclude=["created_by"])
    store = get_store()
    try:
        stored = store.put(f"datasets/{project.slug}/{uuid.uuid4().hex}.{fmt}", file,
                           max_bytes=settings.MODELGATE_MAX_DATASET_BYTES)
    except TooLarge as e:
        raise PayloadTooLarge(str(e), field="file") from e
    try:
        with transaction.atomic():
            lock_open(project)  # not archived meanwhile (archive's module doc)
            existing = Dataset.objects.filter(project=project, sha256=stored.sha256).first()
            if existing:
                raise Conflict(f"this file is already registered as dataset {existing.name} "
                               f"(id {existing.pk})", code="duplicate_dataset", field="file")
            dataset.uri, dataset.sha256, dataset.size = stored.uri, stored.sha256, stored.size
            dataset.save()
            audit.record(user, "dataset.create", dataset,
                         changes={"name": name, "sha256": stored.sha256, "size": stored.size})
            enqueue("workers.registry.profile_dataset", dataset.pk)
    except BaseException:
        store.delete(stored.uri)
        raise
    return dataset


def profile_dataset(dataset_id: int) -> Dataset | None:
    """Read the file, record rows and column schema, and compute the baseline profile.

    The file is read within the dataset limits, in a child process with a memory cap and
    a deadline (``ops.profile.profile_file``): an upload too big or too costly to read
    ends ``failed`` with the reason, never holding the worker."""
    dataset = Dataset.objects.filter(pk=dataset_id).first()
    if dataset is None or dataset.profile_status == ProfileStatus.READY:
        return dataset
    try:
        with get_store().local_path(dataset.uri) as path:
            result = ops_profile.profile_file(
                path, dataset.format, target=dataset.target, limits=dataset_limits(),
                memory_bytes=settings.MODELGATE_DATASET_MEMORY_MB * 1024 * 1024,
                seconds=settings.MODELGATE_DATASET_PROFILE_SECONDS)
        update = {"rows": result["rows"], "columns": result["columns"],
                  "profile": result["profile"], "profile_status": ProfileStatus.READY,
                  "profile_reason": ""}
    except DatasetError as e:
        update = {"profile_status": ProfileStatus.FAILED, "profile_reason": e.detail}
    Dataset.objects.filter(pk=dataset.pk).update(**update)
    dataset.refresh_from_db()
    if dataset.profile_status == ProfileStatus.READY and dataset.is_evaluation:
        from portal.registry.services.evaluations import queue_evaluations

        queue_evaluations(dataset=dataset)
    return dataset


# A worker stopped at its time limit leaves the dataset failed with the reason (never
# pending, which the periodic requeue would send again and again).

def profile_timed_out(dataset_id: int, reason: str) -> None:
    Dataset.objects.filter(pk=dataset_id, profile_status=ProfileStatus.PENDING).update(
        profile_status=ProfileStatus.FAILED, profile_reason=f"profiling {reason}")


def dataset_limits() -> ops_profile.DatasetLimits:
    """The operator's dataset limits (``MODELGATE_DATASET_MAX_*``)."""
    return ops_profile.DatasetLimits(
        max_rows=settings.MODELGATE_DATASET_MAX_ROWS,
        max_columns=settings.MODELGATE_DATASET_MAX_COLUMNS,
        max_cells=settings.MODELGATE_DATASET_MAX_CELLS,
        max_cell_chars=settings.MODELGATE_DATASET_MAX_CELL_CHARS,
        max_unpacked_bytes=settings.MODELGATE_DATASET_MAX_UNPACKED_BYTES)


def read_linked_dataset(dataset: Dataset):
    """A dataset's rows for a worker (validation samples, explanations, diffs), within the
    limits; a dataset whose profiling failed (too big, too slow to read) is refused with
    that reason rather than read again outside the profiler's memory cap and deadline."""
    if dataset.profile_status == ProfileStatus.FAILED:
        raise DatasetError(f"dataset {dataset.name} could not be read: "
                           f"{dataset.profile_reason}", code="dataset_failed")
    with get_store().local_path(dataset.uri) as path:
        return ops_profile.read_dataset(path, dataset.format, dataset_limits())


def sample_rows(version: ModelVersion, feature_names: list[str]):
    """A few real rows from the version's dataset, in schema order, when it has them
    (validation smoke-predicts on them; blue/green checks send them to the candidate)."""
    dataset = version.dataset
    if dataset is None:
        return None
    frame = read_linked_dataset(dataset)
    if not set(feature_names) <= set(frame.columns):
        return None
    sample = frame[feature_names].head(settings.MODELGATE_VALIDATION_SAMPLE_ROWS)
    return sample.to_numpy(dtype=float) if all(
        sample[c].dtype.kind in "biuf" for c in feature_names) else None


def reference_inputs(version: ModelVersion):
    """The version's dataset cut to its inputs in schema order, rows with missing values
    dropped; None when no dataset is linked. ``DatasetError`` when inputs are missing."""
    if version.dataset is None:
        return None
    names = [f.name for f in parse_input_schema(version.input_schema)]
    frame = read_linked_dataset(version.dataset)
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise DatasetError(f"the dataset lacks the inputs {', '.join(missing[:5])}",
                           code="dataset_mismatch")
    return frame[names].dropna()
