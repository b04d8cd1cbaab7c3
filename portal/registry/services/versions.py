"""Model versions: registration, validation by a worker, archiving.

The artifact is stored and hashed on registration; validation loads it in a worker (a
pickle only in the sandbox, converted to skops once) and records ready or invalid."""

from __future__ import annotations

import contextlib
import io
import logging
import uuid
from typing import BinaryIO

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from ops import artifacts as ops_artifacts
from ops import native as ops_native
from ops.exceptions import ArtifactError, DatasetError, PermanentError
from ops.redact import without_paths
from ops.sandbox import SandboxLimits, convert_pickle
from ops.schema import parse_input_schema, schema_document
from ops.storage import ChecksumMismatch, TooLarge, open_verified
from portal.accounts.choices import Role
from portal.accounts.services import require_role
from portal.audit import services as audit
from portal.audit.models import AuditEvent
from portal.errors import Conflict, PayloadTooLarge, ValidationFailed
from portal.queue import enqueue
from portal.registry.choices import ArtifactFormat, SchemaSource, VersionStatus
from portal.registry.metadata import parse_version_metadata
from portal.registry.models import (
    LIVE_VERSION_STATUSES,
    ModelVersion,
    RegisteredModel,
    VersionTag,
)
from portal.registry.services import schemas
from portal.registry.services.archive import lock_open, refuse_archived
from portal.registry.services.base import _full_clean
from portal.registry.services.datasets import sample_rows
from portal.registry.services.projects import unsafe_allowed
from portal.registry.signals import version_registered
from portal.registry.storage import get_store

log = logging.getLogger(__name__)


def register_version(user, model: RegisteredModel, artifact: BinaryIO, metadata,
                     schema_from: str | None = None) -> ModelVersion:
    """Store the artifact, create the version (status pending) and queue its validation.

    ``schema_from`` ("auto", "parent" or "dataset"), when the metadata has no input schema:
    the portal fills it in (``schemas``). The artifact is written before the row; if
    anything after that fails the file is removed again, so a failed registration leaves
    neither a row nor a file behind.
    """
    require_role(user, model.project, Role.CONTRIBUTOR, "register versions")
    refuse_archived(model)
    source = SchemaSource.DECLARED
    if schema_from and isinstance(metadata, dict) and not metadata.get("input_schema"):
        metadata, source = schemas.fill_in(model, metadata, schema_from)
    fields = parse_version_metadata(model, metadata)
    fields["schema_source"] = source
    triggered_by = fields.pop("triggered_by", None)
    if fields["dataset"] is not None:
        refuse_archived(fields["dataset"], field="dataset")
    try:
        head = ops_artifacts.read_head(artifact)
        fmt = ops_artifacts.detect_format(head)
    except ArtifactError as e:
        raise ValidationFailed(e.detail, code=e.code, field="artifact") from e
    if fmt == ops_artifacts.PICKLE and not unsafe_allowed(model.project):
        raise ValidationFailed(
            "pickle/joblib artifacts can run code when loaded and this project does not "
            "accept them; save the model with skops (skops.io.dump)"
            + ("" if settings.MODELGATE_ALLOW_UNSAFE_ARTIFACTS
               else " (they are disabled on this instance)"),
            code="unsafe_artifact", field="artifact")

    key = f"models/{model.project.slug}/{model.name}/{uuid.uuid4().hex}.{artifact_suffix(fmt, head)}"
    store = get_store()
    try:
        stored = store.put(key, artifact, max_bytes=settings.MODELGATE_MAX_ARTIFACT_BYTES)
    except TooLarge as e:
        raise PayloadTooLarge(str(e), field="artifact") from e
    if stored.size == 0:
        store.delete(stored.uri)
        raise ValidationFailed("the artifact is empty", code="empty_artifact", field="artifact")

    try:
        with transaction.atomic():
            # Serialise registrations of one model: two uploads racing would otherwise read
            # the same highest number and collide on it. The same locks keep the project,
            # the model and the dataset from being archived meanwhile (archive's module doc).
            lock_open(model, *filter(None, [fields["dataset"]]))
            _refuse_duplicate(model, stored.sha256, fields["label"])
            last = ModelVersion.objects.filter(model=model).aggregate(n=Max("number"))["n"] or 0
            tags = fields.pop("tags")
            version = ModelVersion(
                model=model, number=last + 1, created_by=user,
                artifact_uri=stored.uri, artifact_sha256=stored.sha256,
                artifact_size=stored.size,
                artifact_format=ArtifactFormat(fmt),
                status=VersionStatus.PENDING, **fields,
            )
            _full_clean(version, exclude=["created_by", "model", "parent", "dataset"])
            _save_live(version, force_insert=True)
            VersionTag.objects.bulk_create(VersionTag(version=version, name=t) for t in tags)
            audit.record(user, "version.create", version, changes={
                "number": version.number, "sha256": stored.sha256, "size": stored.size,
                "format": version.artifact_format, "label": version.label,
                "parent": fields["parent"].number if fields["parent"] else None,
                "dataset": fields["dataset"].pk if fields["dataset"] else None,
                "metrics": version.metrics, "tags": tags,
                **({"triggered_by": triggered_by} if triggered_by else {}),
            })
            # Apps above the registry add to the registration (retraining links its trigger);
            # a refusal rolls it back with the artifact.
            version_registered.send(sender=ModelVersion, version=version, user=user,
                                    triggered_by=triggered_by)
            enqueue("workers.registry.validate_version", version.pk)
    except BaseException:
        store.delete(stored.uri)
        raise
    return version


def artifact_suffix(fmt: str, head: bytes = b"") -> str:
    """The stored file's suffix (and the download's): what its framework saves it as."""
    if fmt == ops_artifacts.XGBOOST:
        return ops_native.ubjson_suffix(head) if head else "json"
    return {ops_artifacts.SKOPS: "skops", ops_artifacts.PICKLE: "joblib",
            **ops_native.SUFFIXES}[fmt]


def _live_twin(model: RegisteredModel, sha256: str, label: str, *, exclude=None):
    """The pending or ready version of ``model`` holding ``sha256`` (field "artifact") or
    ``label`` (field "label"), as (field, version), or None: invalid and archived versions
    hold neither, so a file declared with the wrong schema can be registered again."""
    live = ModelVersion.objects.filter(model=model, status__in=LIVE_VERSION_STATUSES)
    if exclude is not None:
        live = live.exclude(pk=exclude.pk)
    twin = live.filter(artifact_sha256=sha256).first()
    if twin is not None:
        return "artifact", twin
    twin = live.filter(label=label).first() if label else None
    return ("label", twin) if twin is not None else None


def _refuse_duplicate(model: RegisteredModel, sha256: str, label: str, *,
                      exclude: ModelVersion | None = None) -> None:
    found = _live_twin(model, sha256, label, exclude=exclude)
    if found is None:
        return
    field, twin = found
    where = (f"{twin.display_name} of {model.name} ({twin.get_status_display().lower()}; an "
             "invalid or archived version does not hold it)")
    if field == "artifact":
        raise Conflict(f"this artifact is already registered as {where}",
                       code="duplicate_version", field="artifact")
    raise Conflict(f"{model.name} already has a version labelled {label}: {where}",
                   code="duplicate_version", field="label")


def _save_live(version: ModelVersion, **kwargs) -> None:
    """Save; the conditional unique constraints are the race-safe word on duplicates (two
    registrations or a restore racing): their violation is the same 409 as the check's."""
    try:
        with transaction.atomic():
            version.save(**kwargs)
    except IntegrityError as e:
        if "version_unique_live_" not in str(e):
            raise
        field = "label" if "version_unique_live_label" in str(e) else "artifact"
        raise Conflict(f"another version of {version.model.name} holding this {field} was "
                       "registered or restored meanwhile", code="duplicate_version",
                       field=field) from e


def archive_version(user, version: ModelVersion) -> ModelVersion:
    """Archive a version: hidden from use, it keeps its row and file, frees its artifact
    and label for a new registration, and an owner may restore it (``restore_version``)."""
    require_role(user, version.model.project, Role.CONTRIBUTOR, "archive versions")
    if version.aliases.exists():
        names = ", ".join(version.aliases.values_list("name", flat=True))
        raise Conflict(f"{version} is pointed at by alias {names}; move the alias first",
                       code="version_in_use")
    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
        before = locked.status
        if before == VersionStatus.ARCHIVED:
            return locked  # done already: nothing to record
        locked.status = VersionStatus.ARCHIVED
        locked.save(update_fields=["status"])
        audit.record(user, "version.archive", locked,
                     changes={"status": audit.change(before, VersionStatus.ARCHIVED)})
    version.status = locked.status
    return locked


def _status_before_archive(version: ModelVersion) -> str:
    event = (AuditEvent.objects.filter(action="version.archive",
                                       object_type="registry.modelversion",
                                       object_id=str(version.pk)).order_by("-id").first())
    before = ((event.changes or {}).get("status") or {}).get("from") if event else None
    if before in (VersionStatus.READY, VersionStatus.INVALID, VersionStatus.PENDING):
        return before
    return VersionStatus.READY if version.validated_at and not version.status_reason \
        else VersionStatus.INVALID


def restore_version(user, version: ModelVersion) -> ModelVersion:
    """Bring an archived version back with the status it had (an owner's act, as every
    restore: decision 58). 409 when its artifact or label was registered again meanwhile."""
    require_role(user, version.model.project, Role.OWNER, "restore versions")
    with transaction.atomic():
        lock_open(version.model)  # serialised with registrations (they lock the model too)
        locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if locked.status != VersionStatus.ARCHIVED:
            return locked  # done already: nothing to record
        status = _status_before_archive(locked)
        if status in LIVE_VERSION_STATUSES:
            _refuse_duplicate(locked.model, locked.artifact_sha256, locked.label,
                              exclude=locked)
        locked.status = status
        _save_live(locked, update_fields=["status"])
        audit.record(user, "version.restore", locked,
                     changes={"status": audit.change(VersionStatus.ARCHIVED, status)})
        if status == VersionStatus.PENDING:
            enqueue("workers.registry.validate_version", locked.pk)
    return locked


@contextlib.contextmanager
def verified_artifact(version: ModelVersion, *, loadable: bool = True):
    """A local copy of the version's artifact, re-hashed against the sha256 recorded before
    anything loads it: a file changed in the store is refused. ``loadable`` gives the skops
    conversion of a pickle (what every process loads), otherwise the upload itself."""
    uri, digest = ((version.loadable_uri, version.loadable_sha256) if loadable
                   else (version.artifact_uri, version.artifact_sha256))
    with contextlib.ExitStack() as stack:
        try:
            path = stack.enter_context(open_verified(uri, digest, store=get_store()))
        except ChecksumMismatch as e:
            raise ArtifactError("the stored artifact no longer matches its sha256",
                                code="sha256_mismatch") from e
        yield path


def sandbox_limits() -> SandboxLimits:
    return SandboxLimits(memory_bytes=settings.MODELGATE_SANDBOX_MEMORY_MB * 1024**2,
                         cpu_seconds=settings.MODELGATE_SANDBOX_CPU_SECONDS,
                         wall_seconds=settings.MODELGATE_SANDBOX_SECONDS,
                         user=settings.MODELGATE_SANDBOX_USER)


def convert_unsafe_artifact(version: ModelVersion) -> tuple[str, str]:
    """Load the version's pickle once, in the sandbox, and store it as skops; returns the
    stored conversion's (uri, sha256). ``ArtifactError`` when it cannot be done."""
    if not unsafe_allowed(version.model.project):
        raise ArtifactError("pickle/joblib artifacts are not accepted "
                            + ("for this project" if settings.MODELGATE_ALLOW_UNSAFE_ARTIFACTS
                               else "on this instance"), code="unsafe_artifact")
    with verified_artifact(version, loadable=False) as path:
        data = path.read_bytes()
    conversion = convert_pickle(data, sandbox_limits())
    log.info("version %s: pickle converted to skops in the sandbox (%s)", version.pk,
             conversion.isolation)
    if conversion.isolation.get("network") == "shared":
        log.warning("version %s: the sandbox could not leave the network (no network or user "
                    "namespace here); the pickle ran with the other limits only", version.pk)
    # A key of its own per conversion: two workers validating the same version (a requeue
    # racing a slow one) never overwrite the file the other recorded; the loser's is removed.
    key = uuid.uuid4().hex
    try:
        stored = get_store().put(
            f"models/{version.model.project.slug}/{version.model.name}/{key}.converted.skops",
            io.BytesIO(conversion.skops), max_bytes=settings.MODELGATE_MAX_ARTIFACT_BYTES * 4)
    except TooLarge as e:
        raise ArtifactError(f"the model converted to skops is too large: {e}",
                            code="too_large") from e
    return stored.uri, stored.sha256


def validate_version(version_id: int) -> ModelVersion | None:
    """Load the artifact safely and check it; record ready or invalid with the reason.

    Runs in a worker, never in the web process: loading a pickle runs its code.
    """
    version = (ModelVersion.objects.select_related("model__project", "dataset")
               .filter(pk=version_id).first())
    if version is None or version.status != VersionStatus.PENDING:
        return version
    reason = ""
    report = None
    converted = ("", "")
    filled = None  # (schema, source) the portal settled on for an "auto" schema
    try:
        if version.is_unsafe and not version.converted_uri:
            converted = convert_unsafe_artifact(version)
            version.converted_uri, version.converted_sha256 = converted
        with verified_artifact(version) as path:
            report, filled = _inspect(version, path)
    except ArtifactError as e:
        reason = f"{e.code}: {without_paths(e.detail)}"
    except PermanentError as e:  # the stored file is gone: retrying cannot bring it back
        reason = f"artifact_missing: {without_paths(str(e))}"
    with transaction.atomic():
        # Claim: only the first worker to finish records the verdict.
        locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if locked.status != VersionStatus.PENDING:
            if converted[0] and converted[0] != locked.converted_uri:
                get_store().delete(converted[0])  # another worker's conversion was recorded
            return locked
        locked.validated_at = timezone.now()
        locked.converted_uri, locked.converted_sha256 = converted if converted[0] else (
            locked.converted_uri, locked.converted_sha256)
        if report is not None:
            locked.status = VersionStatus.READY
            locked.status_reason = ""
            locked.framework = report.framework
            locked.estimator = report.estimator
            locked.classes = report.classes
        else:
            locked.status = VersionStatus.INVALID
            locked.status_reason = reason
        schema_fields = []
        if filled is not None and locked.schema_source == SchemaSource.AUTO:
            locked.input_schema, locked.schema_source = filled
            schema_fields = ["input_schema", "schema_source"]
        locked.save(update_fields=["status", "status_reason", "validated_at", "framework",
                                   "estimator", "classes", "converted_uri",
                                   "converted_sha256", *schema_fields])
        audit.record(None, "version.validate", locked,
                     changes={"status": audit.change(VersionStatus.PENDING, locked.status),
                              "reason": locked.status_reason,
                              **({"input_schema_from": locked.schema_source}
                                 if schema_fields else {})})
        if locked.status == VersionStatus.READY and settings.MODELGATE_EXPLAIN_VERSIONS:
            enqueue("workers.registry.explain_version", locked.pk)
        if locked.status == VersionStatus.READY:  # after commit: a dataset profiled meanwhile
            # sees this version ready, or this sees the dataset ready (never neither)
            from portal.registry.services.evaluations import queue_evaluations

            transaction.on_commit(lambda: queue_evaluations(version=locked))
    return locked


def _inspect(version: ModelVersion, path) -> tuple:
    """Load the artifact (in the worker) and check it against the version's schema; for
    an "auto" schema, first settle it from the artifact's feature names (``schemas``).
    Returns the report and the (schema, source) settled on, or None."""
    trusted = tuple(settings.MODELGATE_SKOPS_TRUSTED_TYPES)
    fmt = ops_artifacts.detect_file_format(path)
    # XGBoost, LightGBM and ONNX files are parsed by C++ that a crafted file can crash:
    # they are loaded, and predicted with, in a forked child (``check_native``), so such
    # a file leaves the version invalid instead of killing this worker.
    in_child = fmt in ops_native.NATIVE_FORMATS
    loaded = None if in_child else ops_artifacts.load_model(path, extra_trusted=trusted)
    filled = None
    schema = version.input_schema
    if version.schema_source == SchemaSource.AUTO:
        names = (ops_artifacts.check_native(path, fmt)[0] if in_child
                 else getattr(loaded, "feature_names_in_", None))
        try:
            filled = schemas.from_artifact(
                version, [str(n) for n in names] if names is not None else None)
        except ValueError as e:
            raise ArtifactError(str(e), code="no_input_schema") from e
        schema = filled[0]
    features = parse_input_schema(schema)
    if filled is not None:  # stored as a declared one is (``metadata``)
        filled = (schema_document(features), filled[1])
    try:
        sample = sample_rows(version, [f.name for f in features])
    except DatasetError:
        sample = None
    if in_child:
        report = ops_artifacts.check_native(path, fmt, task=version.model.task,
                                            input_schema=features, sample=sample)[1]
    else:
        report = ops_artifacts.inspect_model(loaded, task=version.model.task,
                                             input_schema=features, sample=sample, fmt=fmt)
    return report, filled


# A worker stopped at its time limit leaves the version invalid with the reason (never
# pending, which the periodic requeue would send again and again).

def validation_timed_out(version_id: int, reason: str) -> None:
    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update().filter(pk=version_id).first()
        if locked is None or locked.status != VersionStatus.PENDING:
            return
        locked.status, locked.status_reason = VersionStatus.INVALID, f"timed_out: validation {reason}"
        locked.validated_at = timezone.now()
        locked.save(update_fields=["status", "status_reason", "validated_at"])
        audit.record(None, "version.validate", locked,
                     changes={"status": audit.change(VersionStatus.PENDING, locked.status),
                              "reason": locked.status_reason})
