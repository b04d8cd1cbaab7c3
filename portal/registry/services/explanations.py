"""SHAP explanations: of a ready version on its dataset, and of rows a user sends."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ops import artifacts as ops_artifacts
from ops.exceptions import ArtifactError, DatasetError, PermanentError
from ops.redact import without_paths
from ops.schema import parse_input_schema
from portal.accounts.choices import Role
from portal.accounts.services import require_role
from portal.audit.activity import explanation_requested
from portal.errors import Conflict, ValidationFailed
from portal.queue import enqueue
from portal.registry.choices import ExplanationStatus, VersionStatus
from portal.registry.models import Explanation, InstanceExplanation, ModelVersion
from portal.registry.services.datasets import reference_inputs
from portal.registry.services.versions import verified_artifact

log = logging.getLogger(__name__)


def load_version_model(version: ModelVersion):
    """The version's fitted model, loaded as validation loads it: skops with the trusted
    types (a pickle's skops conversion; a pickle itself never). Runs in workers only."""
    with verified_artifact(version) as path:
        return ops_artifacts.load_model(
            path, extra_trusted=tuple(settings.MODELGATE_SKOPS_TRUSTED_TYPES))


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
    if created or found.status == ExplanationStatus.FAILED or _lost(found):
        # a failed answer is worth another try; a pending one whose task was lost too
        requeue_instances([found.pk])
    return found


# A worker answers within its time limit (90 s, workers.registry.explain_instances): an
# answer still pending after this long lost its task (the broker away, a worker killed).
LOST_AFTER = timedelta(seconds=120)


def _lost(item: InstanceExplanation) -> bool:
    return item.status == ExplanationStatus.PENDING and (
        item.queued_at or item.created_at) < timezone.now() - LOST_AFTER


def requeue_instances(pks: list[int], send=enqueue) -> None:
    """Queue these row explanations (again): pending, queued now; ``send`` is
    ``portal.queue.enqueue`` (on commit) or ``send_now`` (the periodic requeue)."""
    InstanceExplanation.objects.filter(pk__in=pks).update(
        status=ExplanationStatus.PENDING, reason="", queued_at=timezone.now())
    for pk in pks:
        send("workers.registry.explain_instances", pk)


def lost_instance_explanations(older_than: timedelta = LOST_AFTER) -> list[int]:
    """Row explanations still pending ``older_than`` after they were queued (asked within
    the last day: older ones are asked again if anyone still wants them)."""
    from django.db.models.functions import Coalesce

    now = timezone.now()
    return list(InstanceExplanation.objects
                .filter(status=ExplanationStatus.PENDING, created_at__gte=now - timedelta(days=1))
                .annotate(queued=Coalesce("queued_at", "created_at"))
                .filter(queued__lt=now - older_than)
                .values_list("pk", flat=True)[:100])


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


# A worker stopped at its time limit leaves the explanation failed with the reason (never
# pending, which the periodic requeue would send again and again).

def explanation_timed_out(version_id: int, reason: str) -> None:
    Explanation.objects.filter(version_id=version_id).exclude(
        status=ExplanationStatus.READY).update(
        status=ExplanationStatus.FAILED, reason=f"the explanation {reason}",
        updated_at=timezone.now())
