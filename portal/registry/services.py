"""Registry operations: projects, models, versions, datasets, aliases, lineage.

Views, serializers, admin actions and tasks call these functions; none of them carries
business rules of its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import re
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Max
from django.utils import timezone

from ops import artifacts as ops_artifacts
from ops import profile as ops_profile
from ops.exceptions import ArtifactError, DatasetError, PermanentError
from ops.redact import without_paths
from ops.sandbox import SandboxLimits, convert_pickle
from ops.schema import SchemaError, parse_input_schema, schema_document
from ops.storage import ChecksumMismatch, TooLarge, open_verified
from portal.accounts.choices import Role
from portal.accounts.models import Membership
from portal.accounts.services import require_role
from portal.audit import services as audit
from portal.audit.activity import explanation_requested
from portal.errors import Conflict, NotAllowed, PayloadTooLarge, ValidationFailed
from portal.queue import enqueue
from portal.registry.choices import (
    ArtifactFormat,
    ExplanationStatus,
    ProfileStatus,
    VersionStatus,
)
from portal.registry.models import (
    Alias,
    Dataset,
    Explanation,
    InstanceExplanation,
    ModelVersion,
    Project,
    RegisteredModel,
    VersionTag,
    semver_validator,
)
from portal.registry.storage import get_store

log = logging.getLogger(__name__)

PROTECTED_ALIASES = {"champion"}  # moving these needs the approver role
COMMIT = re.compile(r"^[0-9a-f]{7,64}$")


def _full_clean(instance, exclude: Iterable[str] = ()) -> None:
    try:
        instance.full_clean(exclude=list(exclude), validate_unique=False, validate_constraints=False)
    except ValidationError as e:
        field, messages = next(iter(e.message_dict.items()))
        field = None if field == "__all__" else field
        raise ValidationFailed("; ".join(messages) if field is None else
                               f"{field}: {'; '.join(messages)}", field=field) from e


# Projects --------------------------------------------------------------------------------

def unsafe_allowed(project: Project) -> bool:
    """Whether pickle/joblib uploads are accepted for ``project``: the operator enables them
    for the instance (``MODELGATE_ALLOW_UNSAFE_ARTIFACTS``) and staff for the project."""
    return settings.MODELGATE_ALLOW_UNSAFE_ARTIFACTS and project.allow_unsafe_artifacts


def _check_unsafe_choice(user, allow: bool) -> None:
    """Allowing unsafe artifacts is an operator's and staff's decision, never an owner's:
    a pickle runs code on the machines that run the portal, which no project owns."""
    if not allow:
        return
    if not settings.MODELGATE_ALLOW_UNSAFE_ARTIFACTS:
        raise ValidationFailed(
            "pickle/joblib artifacts are disabled on this instance; its operator may enable "
            "them (MODELGATE_ALLOW_UNSAFE_ARTIFACTS)", code="unsafe_disabled",
            field="allow_unsafe_artifacts")
    if not user.is_staff:
        raise NotAllowed("only staff may allow pickle/joblib artifacts for a project",
                         code="staff_required")


def create_project(user, *, name: str, slug: str, description: str = "",
                   allow_unsafe_artifacts: bool = False) -> Project:
    """Any signed-in user may create a project and becomes its owner."""
    _check_unsafe_choice(user, allow_unsafe_artifacts)
    project = Project(name=name, slug=slug, description=description,
                      allow_unsafe_artifacts=allow_unsafe_artifacts, created_by=user)
    _full_clean(project, exclude=["created_by"])
    with transaction.atomic():
        if Project.objects.filter(slug=slug).exists():
            raise Conflict(f"a project with slug {slug!r} already exists", code="duplicate_project",
                           field="slug")
        project.save()
        Membership.objects.create(project=project, user=user, role=Role.OWNER)
        audit.record(user, "project.create", project,
                     changes={"name": name, "slug": slug,
                              "allow_unsafe_artifacts": allow_unsafe_artifacts})
    return project


PROJECT_EDITABLE = ("name", "description", "allow_unsafe_artifacts")


def update_project(user, project: Project, **fields) -> Project:
    require_role(user, project, Role.OWNER, "change project settings")
    unknown = set(fields) - set(PROJECT_EDITABLE)
    if unknown:
        raise ValidationFailed(f"cannot change {', '.join(sorted(unknown))}")
    if fields.get("allow_unsafe_artifacts") and not project.allow_unsafe_artifacts:
        _check_unsafe_choice(user, True)
    before = {k: getattr(project, k) for k in fields}
    for key, value in fields.items():
        setattr(project, key, value)
    _full_clean(project, exclude=["created_by", "slug"])
    with transaction.atomic():
        project.save(update_fields=list(fields))
        audit.record(user, "project.update", project, changes=audit.diff(before, fields))
    return project


# Models ----------------------------------------------------------------------------------

def create_model(user, project: Project, *, name: str, task: str,
                 description: str = "") -> RegisteredModel:
    require_role(user, project, Role.CONTRIBUTOR, "register models")
    model = RegisteredModel(project=project, name=name, task=task, description=description,
                            created_by=user)
    _full_clean(model, exclude=["created_by"])
    try:
        with transaction.atomic():
            model.save()
            audit.record(user, "model.create", model, changes={"name": name, "task": task})
    except IntegrityError as e:
        raise Conflict(f"project {project.slug} already has a model named {name!r}",
                       code="duplicate_model", field="name") from e
    return model


def update_model(user, model: RegisteredModel, *, description: str) -> RegisteredModel:
    require_role(user, model.project, Role.CONTRIBUTOR, "edit models")
    with transaction.atomic():
        before = model.description
        model.description = description
        model.save(update_fields=["description"])
        audit.record(user, "model.update", model, changes={"description": audit.change(before, description)})
    return model


# Versions --------------------------------------------------------------------------------

def parse_version_metadata(model: RegisteredModel, metadata) -> dict:
    """Check the metadata document of a new version; return the fields to store.

    Raises ``ValidationFailed`` naming the first offending field.
    """
    if not isinstance(metadata, dict):
        raise ValidationFailed("metadata must be a JSON object", field="metadata")
    known = {"metrics", "params", "input_schema", "output_schema", "dataset", "code", "parent",
             "tags", "label", "description"}
    unknown = set(metadata) - known
    if unknown:
        raise ValidationFailed(f"metadata has unknown keys: {', '.join(sorted(unknown))} "
                               f"(known: {', '.join(sorted(known))})", field="metadata")
    if "input_schema" not in metadata:
        raise ValidationFailed("metadata.input_schema is required: the list of input features",
                               field="input_schema")
    try:
        features = parse_input_schema(metadata["input_schema"])
    except SchemaError as e:
        raise ValidationFailed(str(e), field="input_schema") from e

    metrics = metadata.get("metrics", {})
    if not isinstance(metrics, dict) or not all(
        isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
        and v == v for k, v in metrics.items()
    ):
        raise ValidationFailed("metrics must map names to numbers, e.g. {\"auc\": 0.93}",
                               field="metrics")
    params = metadata.get("params", {})
    if not isinstance(params, dict):
        raise ValidationFailed("params must be a JSON object", field="params")
    output_schema = metadata.get("output_schema", {})
    if not isinstance(output_schema, dict):
        raise ValidationFailed("output_schema must be a JSON object", field="output_schema")

    code = metadata.get("code") or {}
    if not isinstance(code, dict) or set(code) - {"repository", "commit"}:
        raise ValidationFailed("code must be {\"repository\": ..., \"commit\": ...}", field="code")
    commit = str(code.get("commit") or "").lower()
    if commit and not COMMIT.match(commit):
        raise ValidationFailed("code.commit must be a hexadecimal git commit id", field="code")

    tags = metadata.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and 0 < len(t) <= 64 for t in tags):
        raise ValidationFailed("tags must be a list of short strings", field="tags")

    label = metadata.get("label") or ""
    if label:
        try:
            semver_validator(label)
        except ValidationError as e:
            raise ValidationFailed(f"label {label!r} is not a semantic version such as 1.4.0",
                                   field="label") from e

    dataset = None
    if metadata.get("dataset") not in (None, ""):
        dataset = _resolve_dataset(model.project, metadata["dataset"])
    parent = None
    if metadata.get("parent") not in (None, ""):
        parent = _resolve_parent(model, metadata["parent"])

    description = metadata.get("description") or ""
    if not isinstance(description, str):
        raise ValidationFailed("description must be a string", field="description")
    return {
        "input_schema": schema_document(features),
        "output_schema": output_schema,
        "metrics": metrics,
        "params": params,
        "code_repository": str(code.get("repository") or "")[:300],
        "code_commit": commit,
        "tags": sorted(set(tags)),
        "label": label,
        "dataset": dataset,
        "parent": parent,
        "description": description,
    }


def _resolve_dataset(project: Project, ref) -> Dataset:
    queryset = Dataset.objects.filter(project=project)
    if isinstance(ref, int) and not isinstance(ref, bool):
        dataset = queryset.filter(pk=ref).first()
    elif isinstance(ref, str):
        dataset = queryset.filter(name=ref).order_by("-created_at").first() or (
            queryset.filter(sha256=ref.lower()).first() if len(ref) == 64 else None)
    else:
        raise ValidationFailed("dataset must be a dataset id, name or sha256", field="dataset")
    if dataset is None:
        raise ValidationFailed(f"dataset {ref!r} is not in project {project.slug}",
                               code="unknown_dataset", field="dataset")
    return dataset


def _resolve_parent(model: RegisteredModel, ref) -> ModelVersion:
    number = ref
    if isinstance(ref, str) and re.fullmatch(r"v?\d+", ref):
        number = int(ref.lstrip("v"))
    if not isinstance(number, int) or isinstance(number, bool):
        raise ValidationFailed("parent must be a version number of this model, e.g. 2",
                               field="parent")
    parent = ModelVersion.objects.filter(model=model, number=number).first()
    if parent is None:
        raise ValidationFailed(f"model {model.name} has no version {number}",
                               code="unknown_parent", field="parent")
    return parent


def register_version(user, model: RegisteredModel, artifact: BinaryIO, metadata) -> ModelVersion:
    """Store the artifact, create the version (status pending) and queue its validation.

    The artifact is written before the row; if anything after that fails the file is
    removed again, so a failed registration leaves neither a row nor a file behind.
    """
    require_role(user, model.project, Role.CONTRIBUTOR, "register versions")
    fields = parse_version_metadata(model, metadata)
    try:
        fmt = ops_artifacts.detect_format(ops_artifacts.read_head(artifact))
    except ArtifactError as e:
        raise ValidationFailed(e.detail, code=e.code, field="artifact") from e
    if fmt == ops_artifacts.PICKLE and not unsafe_allowed(model.project):
        raise ValidationFailed(
            "pickle/joblib artifacts can run code when loaded and this project does not "
            "accept them; save the model with skops (skops.io.dump)"
            + ("" if settings.MODELGATE_ALLOW_UNSAFE_ARTIFACTS
               else " (they are disabled on this instance)"),
            code="unsafe_artifact", field="artifact")

    key = f"models/{model.project.slug}/{model.name}/{uuid.uuid4().hex}." + (
        "skops" if fmt == ops_artifacts.SKOPS else "joblib")
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
            # the same highest number and collide on it.
            RegisteredModel.objects.select_for_update().only("pk").get(pk=model.pk)
            existing = ModelVersion.objects.filter(model=model,
                                                   artifact_sha256=stored.sha256).first()
            if existing is not None:
                raise Conflict(f"this artifact is already registered as {existing.display_name} "
                               f"of {model.name}", code="duplicate_version", field="artifact")
            if fields["label"] and ModelVersion.objects.filter(model=model,
                                                               label=fields["label"]).exists():
                raise Conflict(f"{model.name} already has a version labelled {fields['label']}",
                               code="duplicate_version", field="label")
            last = ModelVersion.objects.filter(model=model).aggregate(n=Max("number"))["n"] or 0
            tags = fields.pop("tags")
            version = ModelVersion(
                model=model, number=last + 1, created_by=user,
                artifact_uri=stored.uri, artifact_sha256=stored.sha256,
                artifact_size=stored.size,
                artifact_format=ArtifactFormat.SKOPS if fmt == ops_artifacts.SKOPS
                else ArtifactFormat.PICKLE,
                status=VersionStatus.PENDING, **fields,
            )
            _full_clean(version, exclude=["created_by", "model", "parent", "dataset"])
            version.save(force_insert=True)
            VersionTag.objects.bulk_create(VersionTag(version=version, name=t) for t in tags)
            audit.record(user, "version.create", version, changes={
                "number": version.number, "sha256": stored.sha256, "size": stored.size,
                "format": version.artifact_format, "label": version.label,
                "parent": fields["parent"].number if fields["parent"] else None,
                "dataset": fields["dataset"].pk if fields["dataset"] else None,
                "metrics": version.metrics, "tags": tags,
            })
            enqueue("workers.registry.validate_version", version.pk)
    except BaseException:
        store.delete(stored.uri)
        raise
    return version


# Queued work -------------------------------------------------------------------------------
# Validation, profiles and explanations are queued by task name (portal.queue.enqueue) when
# their transaction commits; a broker away leaves them pending, and ``requeue_stuck_work``
# (beat, every minute: workers.registry.requeue_stuck_work) queues them again.

def requeue_stuck_work(older_than_seconds: int = 120) -> int:
    """Re-queue validations and profiles that no worker finished (broker lost, worker killed),
    and explanations of ready versions that never ran; how many were queued."""
    from django.db.models import Q

    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    versions = list(ModelVersion.objects.filter(status=VersionStatus.PENDING, created_at__lt=cutoff)
                    .values_list("pk", flat=True)[:500])
    datasets = list(Dataset.objects.filter(profile_status=ProfileStatus.PENDING,
                                           created_at__lt=cutoff).values_list("pk", flat=True)[:500])
    for pk in versions:
        enqueue("workers.registry.validate_version", pk)
    for pk in datasets:
        enqueue("workers.registry.profile_dataset", pk)
    explain = []
    if settings.MODELGATE_EXPLAIN_VERSIONS:  # ready versions whose explanation never ran
        explain = list(ModelVersion.objects.filter(status=VersionStatus.READY,
                                                   validated_at__lt=cutoff)
                       .filter(Q(explanation__isnull=True)
                               | Q(explanation__status="pending",
                                   explanation__updated_at__lt=cutoff - timedelta(minutes=10)))
                       .values_list("pk", flat=True)[:100])
        for pk in explain:
            enqueue("workers.registry.explain_version", pk)
    if versions or datasets or explain:
        log.info("requeued %d validations, %d profiles and %d explanations", len(versions),
                 len(datasets), len(explain))
    return len(versions) + len(datasets) + len(explain)

# (end of queued work) ----------------------------------------------------------------------


def archive_version(user, version: ModelVersion) -> ModelVersion:
    require_role(user, version.model.project, Role.CONTRIBUTOR, "archive versions")
    if version.aliases.exists():
        names = ", ".join(version.aliases.values_list("name", flat=True))
        raise Conflict(f"{version} is pointed at by alias {names}; move the alias first",
                       code="version_in_use")
    with transaction.atomic():
        before = version.status
        version.status = VersionStatus.ARCHIVED
        version.save(update_fields=["status"])
        audit.record(user, "version.archive", version,
                     changes={"status": audit.change(before, VersionStatus.ARCHIVED)})
    return version


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
    features = parse_input_schema(version.input_schema)
    reason = ""
    report = None
    converted = ("", "")
    try:
        if version.is_unsafe and not version.converted_uri:
            converted = convert_unsafe_artifact(version)
            version.converted_uri, version.converted_sha256 = converted
        with verified_artifact(version) as path:
            sample = None
            try:
                sample = sample_rows(version, [f.name for f in features])
            except DatasetError:
                sample = None
            report = ops_artifacts.validate_artifact(
                path, task=version.model.task, input_schema=features,
                extra_trusted=tuple(settings.MODELGATE_SKOPS_TRUSTED_TYPES), sample=sample,
            )
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
        locked.save(update_fields=["status", "status_reason", "validated_at", "framework",
                                   "estimator", "classes", "converted_uri",
                                   "converted_sha256"])
        audit.record(None, "version.validate", locked,
                     changes={"status": audit.change(VersionStatus.PENDING, locked.status),
                              "reason": locked.status_reason})
        if locked.status == VersionStatus.READY and settings.MODELGATE_EXPLAIN_VERSIONS:
            enqueue("workers.registry.explain_version", locked.pk)
    return locked


# Explanations ----------------------------------------------------------------------------

def load_version_model(version: ModelVersion):
    """The version's fitted model, loaded as validation loads it: skops with the trusted
    types (a pickle's skops conversion; a pickle itself never). Runs in workers only."""
    with verified_artifact(version) as path:
        return ops_artifacts.load_model(
            path, extra_trusted=tuple(settings.MODELGATE_SKOPS_TRUSTED_TYPES))


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


def explain_version(version_id: int) -> Explanation | None:
    """Compute (once) the SHAP explanation of a ready version on a sample of its dataset.

    Runs in a worker. Any failure — no reference dataset, a model SHAP cannot explain,
    values that do not add up — is recorded as a failed explanation with the reason (the
    task's time limit too, by ``explanation_timed_out``).
    """
    from celery.exceptions import SoftTimeLimitExceeded

    from explainability.shap_values import ExplanationError, explain

    version = (ModelVersion.objects.select_related("model__project", "dataset")
               .filter(pk=version_id, status=VersionStatus.READY).first())
    if version is None:
        return None
    explanation, _ = Explanation.objects.get_or_create(version=version)
    if explanation.status == ExplanationStatus.READY:
        return explanation
    fields = {}
    try:
        frame = reference_inputs(version)
        if frame is None:
            raise ExplanationError("the version has no reference dataset to explain it on "
                                   "(link one when registering it)", code="no_dataset")
        model = load_version_model(version)
        result = explain(model, frame, frame,
                         max_rows=settings.MODELGATE_EXPLANATION_SAMPLE_ROWS)
        fields = {**result.to_dict(), "status": ExplanationStatus.READY, "reason": "",
                  "target_class": result.target_class or ""}
    except ExplanationError as e:
        fields = {"status": ExplanationStatus.FAILED, "reason": e.detail}
    except (ArtifactError, DatasetError, PermanentError) as e:
        fields = {"status": ExplanationStatus.FAILED,
                  "reason": without_paths(getattr(e, "detail", None) or str(e))}
    except SoftTimeLimitExceeded:
        raise  # the task records the time limit
    except Exception as e:  # a model that fails on its own data: recorded, never retried forever
        log.exception("explaining %s failed", version)
        fields = {"status": ExplanationStatus.FAILED, "reason": f"{type(e).__name__}: {without_paths(str(e))}"}
    Explanation.objects.filter(pk=explanation.pk).update(**fields, updated_at=timezone.now())
    explanation.refresh_from_db()
    log.info("explained %s: %s %s", version, explanation.status, explanation.reason)
    return explanation


MAX_EXPLAIN_ROWS = 100


def request_instance_explanation(user, version: ModelVersion, instances) -> InstanceExplanation:
    """Ask for predictions and SHAP values of ``instances`` (rows in schema order, or
    objects keyed by feature name). The same rows asked again return the stored answer;
    new ones are computed by a worker (eagerly in tests)."""
    require_role(user, version.model.project, Role.VIEWER, "explain predictions")
    if version.status != VersionStatus.READY:
        raise Conflict(f"{version} is {version.get_status_display().lower()}; only ready "
                       "versions explain predictions", code="version_not_ready")
    names = [f.name for f in parse_input_schema(version.input_schema)]
    if not isinstance(instances, list) or not instances:
        raise ValidationFailed("instances must be a non-empty list of rows", field="instances")
    if len(instances) > MAX_EXPLAIN_ROWS:
        raise ValidationFailed(f"at most {MAX_EXPLAIN_ROWS} instances per request "
                               f"(got {len(instances)})", code="too_many_instances",
                               field="instances")
    rows = []
    for i, row in enumerate(instances):
        if isinstance(row, dict):
            missing = [n for n in names if n not in row]
            extra = sorted(set(row) - set(names))
            if missing or extra:
                raise ValidationFailed(
                    f"instances[{i}]: " + "; ".join(
                        ([f"missing {', '.join(missing[:5])}"] if missing else [])
                        + ([f"unknown {', '.join(extra[:5])}"] if extra else [])),
                    field=f"instances[{i}]")
            row = [row[n] for n in names]
        if not isinstance(row, list) or len(row) != len(names):
            raise ValidationFailed(f"instances[{i}] must have {len(names)} values in the "
                                   f"order of the input schema", field=f"instances[{i}]")
        values = []
        for name, value in zip(names, row, strict=True):
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value):
                raise ValidationFailed(f"instances[{i}].{name} must be a finite number, not "
                                       f"{value!r}", field=f"instances[{i}]")
            values.append(float(value))
        rows.append(values)
    digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()
    with transaction.atomic():
        found, created = InstanceExplanation.objects.get_or_create(
            version=version, input_hash=digest, defaults={"rows": rows, "requested_by": user})
        explanation_requested(user, version, found, created)  # counted and audited
    if created or found.status == ExplanationStatus.FAILED:
        if not created:  # a failed answer is worth another try
            InstanceExplanation.objects.filter(pk=found.pk).update(
                status=ExplanationStatus.PENDING, reason="")
        enqueue("workers.registry.explain_instances", found.pk)
    return found


def explain_instances(explanation_id: int, *, timed_out: bool = False) -> InstanceExplanation | None:
    """Compute what ``request_instance_explanation`` stored (runs in a worker)."""
    from celery.exceptions import SoftTimeLimitExceeded

    from explainability.shap_values import ExplanationError, explain

    item = (InstanceExplanation.objects.select_related("version__model__project",
                                                       "version__dataset")
            .filter(pk=explanation_id).first())
    if item is None or item.status == ExplanationStatus.READY:
        return item
    if timed_out:
        fields = {"status": ExplanationStatus.FAILED,
                  "reason": "the explanation took longer than the time allowed"}
    else:
        version = item.version
        names = [f.name for f in parse_input_schema(version.input_schema)]
        try:
            import pandas as pd

            frame = pd.DataFrame(item.rows, columns=names)
            background, source = frame, "the instances themselves (no reference dataset)"
            try:
                data = reference_inputs(version)
            except DatasetError as e:  # a dataset without these inputs: as if there were none
                if e.code != "dataset_mismatch":
                    raise
                data = None
            if data is not None:
                background = data.head(1000)
                source = f"{len(background)} rows of {version.dataset.name}"
            model = load_version_model(version)
            result = explain(model, frame, background, max_rows=len(frame))
            predictions = model.predict(frame).tolist()
            fields = {"status": ExplanationStatus.READY, "reason": "", "result": {
                "predictions": [p.item() if hasattr(p, "item") else p for p in predictions],
                "outputs": result.outputs, "output": result.output,
                "base_value": result.base_value, "feature_names": result.feature_names,
                "values": result.values, "method": result.method, "background": source,
                "seconds": result.seconds}}
        except ExplanationError as e:
            fields = {"status": ExplanationStatus.FAILED, "reason": e.detail}
        except (ArtifactError, DatasetError, PermanentError, ValueError) as e:
            fields = {"status": ExplanationStatus.FAILED,
                      "reason": without_paths(getattr(e, "detail", None) or str(e))}
        except SoftTimeLimitExceeded:
            raise  # the task records the time limit
        except Exception as e:  # the model raised on these rows: say so
            log.exception("explaining rows %s failed", item.pk)
            fields = {"status": ExplanationStatus.FAILED, "reason": f"{type(e).__name__}: {without_paths(str(e))}"}
    InstanceExplanation.objects.filter(pk=item.pk).update(**fields, finished_at=timezone.now())
    item.refresh_from_db()
    return item


# Datasets --------------------------------------------------------------------------------

def upload_dataset(user, project: Project, *, name: str, file: BinaryIO, filename: str = "",
                   target: str = "", description: str = "") -> Dataset:
    require_role(user, project, Role.CONTRIBUTOR, "upload datasets")
    try:
        fmt = ops_profile.detect_dataset_format(ops_artifacts.read_head(file, 8), filename)
    except DatasetError as e:
        raise ValidationFailed(e.detail, code=e.code, field="file") from e
    dataset = Dataset(project=project, name=name, description=description, target=target,
                      format=fmt, uri="pending", sha256="0" * 64, created_by=user)
    _full_clean(dataset, exclude=["created_by"])
    store = get_store()
    try:
        stored = store.put(f"datasets/{project.slug}/{uuid.uuid4().hex}.{fmt}", file,
                           max_bytes=settings.MODELGATE_MAX_DATASET_BYTES)
    except TooLarge as e:
        raise PayloadTooLarge(str(e), field="file") from e
    try:
        with transaction.atomic():
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
    return dataset


# Time limits: a worker task stopped at its limit leaves its object failed with the reason
# (never pending, which the periodic requeue would send again and again).

def profile_timed_out(dataset_id: int, reason: str) -> None:
    Dataset.objects.filter(pk=dataset_id, profile_status=ProfileStatus.PENDING).update(
        profile_status=ProfileStatus.FAILED, profile_reason=f"profiling {reason}")


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


def explanation_timed_out(version_id: int, reason: str) -> None:
    Explanation.objects.filter(version_id=version_id).exclude(
        status=ExplanationStatus.READY).update(
        status=ExplanationStatus.FAILED, reason=f"the explanation {reason}",
        updated_at=timezone.now())


# Aliases ---------------------------------------------------------------------------------

def set_alias(user, model: RegisteredModel, name: str, version: ModelVersion) -> Alias:
    """Point ``name`` at ``version`` (creating the alias or moving it)."""
    needed = Role.APPROVER if name in PROTECTED_ALIASES else Role.CONTRIBUTOR
    require_role(user, model.project, needed, f"move the {name} alias")
    if version.model_id != model.pk:
        raise ValidationFailed(f"{version} is not a version of {model.name}", field="version")
    if version.status != VersionStatus.READY:
        raise Conflict(f"{version} is {version.get_status_display().lower()}; only ready versions "
                       "can carry an alias", code="version_not_ready", field="version")
    with transaction.atomic():
        alias = Alias.objects.select_for_update().filter(model=model, name=name).first()
        before = alias.version.number if alias else None
        if alias is None:
            alias = Alias(model=model, name=name, version=version, updated_by=user)
            _full_clean(alias, exclude=["updated_by"])
        elif alias.version_id == version.pk:
            return alias
        alias.version = version
        alias.updated_by = user
        alias.save()
        audit.record(user, "alias.set", alias, changes={"version": audit.change(before, version.number)},
                     project_id=model.project_id)
    return alias


def delete_alias(user, alias: Alias) -> None:
    needed = Role.APPROVER if alias.name in PROTECTED_ALIASES else Role.CONTRIBUTOR
    require_role(user, alias.model.project, needed, f"remove the {alias.name} alias")
    with transaction.atomic():
        audit.record(user, "alias.delete", alias,
                     changes={"version": audit.change(alias.version.number, None)},
                     project_id=alias.model.project_id)
        alias.delete()


# Lineage ---------------------------------------------------------------------------------

MAX_LINEAGE_NODES = 200
# A version's ancestors (nearest first) then its descendants (level by level), at most
# MAX_LINEAGE_NODES, in one query whatever the depth: walking the graph one query per
# generation cost a page a query for each ancestor and each level of descendants. Both
# PostgreSQL and SQLite run recursive common table expressions; the depth bound also ends
# a walk that meets a cycle.
_LINEAGE_SQL = """
WITH RECURSIVE up(id, parent_id, depth) AS (
    SELECT id, parent_id, 0 FROM {table} WHERE id = %s
    UNION
    SELECT v.id, v.parent_id, up.depth + 1 FROM {table} v JOIN up ON v.id = up.parent_id
    WHERE up.depth < %s
), down(id, depth) AS (
    SELECT id, 0 FROM {table} WHERE id = %s
    UNION
    SELECT v.id, down.depth + 1 FROM {table} v JOIN down ON v.parent_id = down.id
    WHERE down.depth < %s
)
SELECT id FROM (
    SELECT id, 0 AS side, depth FROM up
    UNION ALL
    SELECT id, 1 AS side, depth FROM down WHERE depth > 0
) AS lineage ORDER BY side, depth, id LIMIT %s
"""


def lineage(version: ModelVersion) -> dict:
    """The graph around a version: its ancestors, descendants and their datasets.

    Nodes are ``{"id", "kind", "label", ...}``; edges ``{"source", "target", "kind"}`` with
    kinds ``derived_from`` (parent → child) and ``trained_on`` (dataset → version).
    """
    with connection.cursor() as cursor:
        cursor.execute(_LINEAGE_SQL.format(table=ModelVersion._meta.db_table),
                       [version.pk, MAX_LINEAGE_NODES, version.pk, MAX_LINEAGE_NODES,
                        MAX_LINEAGE_NODES])
        ids = [row[0] for row in cursor.fetchall()]
    versions: dict[int, ModelVersion] = {
        v.pk: v for v in ModelVersion.objects.select_related("dataset", "model__project")
        .filter(pk__in=ids)}
    versions.setdefault(version.pk, version)

    model = version.model
    nodes, edges = [], []
    datasets: dict[int, Dataset] = {}
    for v in sorted(versions.values(), key=lambda v: v.number):
        nodes.append({
            "id": f"version:{v.pk}", "kind": "version", "version_id": v.pk,
            "label": f"{model.name} {v.display_name}", "number": v.number, "status": v.status,
            "created_at": v.created_at.isoformat(), "focus": v.pk == version.pk,
            "url": v.get_absolute_url() if v.model_id == model.pk else None,
        })
        if v.parent_id and v.parent_id in versions:
            edges.append({"source": f"version:{v.parent_id}", "target": f"version:{v.pk}",
                          "kind": "derived_from"})
        if v.dataset_id:
            datasets[v.dataset_id] = v.dataset
            edges.append({"source": f"dataset:{v.dataset_id}", "target": f"version:{v.pk}",
                          "kind": "trained_on"})
    for d in datasets.values():
        nodes.append({"id": f"dataset:{d.pk}", "kind": "dataset", "dataset_id": d.pk,
                      "label": d.name, "sha256": d.sha256, "rows": d.rows,
                      "url": d.get_absolute_url()})
    return {"version": version.pk, "nodes": nodes, "edges": edges}

