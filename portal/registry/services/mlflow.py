"""MLflow as the training side, the registry as the release gate (decision 66).

``request_import`` records what to import (a registered model's version or a run's model)
and queues it; ``run_import`` — in a worker, never the web process — asks MLflow for the
run and the ``MLmodel`` file, downloads the flavour's model file, turns a pickle whose
every type is trusted into skops (``ops.pickles``, the sandbox), and hands the file with
the run's lineage to ``register_version``, the one registration path: the version is then
validated like an upload. ``follow`` keeps a model in step with an MLflow registered model
by alias or tag: MLflow's webhook (``receive_webhook``) or beat's poll (``poll_follows``)
asks a worker to ``sync_follow``, which requests an import for each version it finds.

One live import per (model, tracking server, source): the request checks, and the
conditional unique constraint settles two requests racing (the loser gets the winner's
import back, never a second version). A worker claims an import with a conditional UPDATE
before working on it, so two deliveries of the task never download it twice.
"""

from __future__ import annotations

import logging
import re
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import Q
from django.utils import timezone

from ops import artifacts as ops_artifacts
from ops import mlflow as ops_mlflow
from ops import mlflow_webhooks
from ops.exceptions import ArtifactError, TransientError
from ops.pickles import pickle_globals, untrusted_globals
from ops.redact import without_paths
from ops.sandbox import convert_pickle
from ops.storage import sha256_file
from portal.accounts.choices import Role
from portal.accounts.services import require_role, role_in
from portal.audit import services as audit
from portal.errors import DomainError, NotAllowed, ValidationFailed
from portal.queue import enqueue, send_now
from portal.registry.choices import ImportStatus, SchemaSource
from portal.registry.metadata import COMMIT
from portal.registry.models import MlflowFollow, MlflowImport, RegisteredModel
from portal.registry.services.archive import refuse_archived
from portal.registry.services.projects import unsafe_allowed
from portal.registry.services.versions import register_version, sandbox_limits

log = logging.getLogger(__name__)

# A claim older than the import task's hard limit belongs to a worker that died.
CLAIM_STALE_AFTER = timedelta(seconds=660)
# Versions of a followed tag imported per look, newest first (a tag on hundreds of versions
# is not a release stream).
MAX_TAGGED_VERSIONS = 10
# A follow whose looks keep failing waits the poll interval doubled per failure in a row,
# at most a day; the count is kept at the start of ``last_error`` ("(3 failures in a row) ").
MAX_BACKOFF_SECONDS = 86400
_FAILURES = re.compile(r"^\((\d+) failures in a row\) ")
# Every refused webhook delivery answers this, whether the follow exists or not.
WEBHOOK_REFUSAL = ("the delivery is unsigned, stale (more than "
                   f"{mlflow_webhooks.WEBHOOK_TOLERANCE_SECONDS} s old) or not signed with this "
                   "follow's secret")


# The tracking server ---------------------------------------------------------------------------

def _is_operators(uri: str) -> bool:
    return bool(settings.MLFLOW_TRACKING_URI) and uri == settings.MLFLOW_TRACKING_URI


def tracking_uri_for(uri: str | None) -> str:
    """The tracking URI to use (the operator's when none is given), checked against the
    private-address rule; ``ValidationFailed`` naming the reason otherwise."""
    uri = (uri or settings.MLFLOW_TRACKING_URI or "").strip().rstrip("/")
    if not uri:
        raise ValidationFailed("give the MLflow tracking URI (this instance has no "
                               "MLFLOW_TRACKING_URI)", code="no_tracking_uri",
                               field="tracking_uri")
    refusal = None if _is_operators(uri) else ops_mlflow.tracking_uri_refusal(
        uri, allow_private=settings.MODELGATE_MLFLOW_ALLOW_PRIVATE)
    if refusal:
        raise ValidationFailed(refusal, code="tracking_uri_refused", field="tracking_uri")
    return uri


def tracking_server(uri: str) -> ops_mlflow.TrackingServer:
    """A client of ``uri``; the operator's credentials only when it is the operator's
    server (an owner's address never receives them). Checked again: DNS answers change."""
    uri = tracking_uri_for(uri)
    credentials = ops_mlflow.Credentials(
        token=settings.MLFLOW_TRACKING_TOKEN, username=settings.MLFLOW_TRACKING_USERNAME,
        password=settings.MLFLOW_TRACKING_PASSWORD) if _is_operators(uri) else None
    # The address connected to is checked too (DNS rebinding), unless private ones are allowed.
    public_only = not (_is_operators(uri) or settings.MODELGATE_MLFLOW_ALLOW_PRIVATE)
    return ops_mlflow.TrackingServer(uri, credentials, timeout=settings.MODELGATE_MLFLOW_TIMEOUT,
                                     public_only=public_only)


# Requesting an import ---------------------------------------------------------------------------

def request_import(user, model: RegisteredModel, source: ops_mlflow.Source, *,
                   tracking_uri: str | None = None) -> tuple[MlflowImport, bool]:
    """Queue the import of ``source`` into ``model`` (contributors); (import, created).
    The same source asked again while an import of it is pending or done answers that one."""
    require_role(user, model.project, Role.CONTRIBUTOR, "import versions")
    refuse_archived(model)
    _check_source(source)
    return _request(model, tracking_uri_for(tracking_uri), source, requested_by=user)


def _check_source(source: ops_mlflow.Source) -> None:
    if source.kind == "model" and not (source.name and source.version):
        raise ValidationFailed("give the registered model's name and version",
                               code="invalid_source", field="name")
    if source.kind == "run" and not source.run_id:
        raise ValidationFailed("give the run id", code="invalid_source", field="run_id")
    if source.kind == "run":
        refusal = ops_mlflow.path_refusal(source.artifact_path)
        if refusal:
            raise ValidationFailed(f"the model's name in the run is refused: {refusal}",
                                   code="invalid_source", field="artifact_path")


def _live(model, tracking_uri: str, key: str) -> MlflowImport | None:
    return (MlflowImport.objects.filter(model=model, tracking_uri=tracking_uri, source=key)
            .exclude(status=ImportStatus.FAILED).first())


def _request(model, tracking_uri: str, source: ops_mlflow.Source, *, requested_by=None,
             follow: MlflowFollow | None = None) -> tuple[MlflowImport, bool]:
    existing = _live(model, tracking_uri, source.key)
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            item = MlflowImport.objects.create(
                model=model, follow=follow, tracking_uri=tracking_uri, source=source.key,
                requested_by=requested_by,
                run_id=source.run_id if source.kind == "run" else "")
            audit.record(requested_by, "mlflow_import.request", item, changes={
                "source": source.key, "tracking_uri": tracking_uri,
                "follow": follow.pk if follow else None}, project_id=model.project_id)
            enqueue("workers.registry.import_mlflow_version", item.pk)
    except IntegrityError as e:
        # Another request for the same source committed first (the constraint
        # mlflow_import_unique_live): answer with its import, never a second one.
        if "mlflow_import_unique_live" not in str(e):
            raise
        existing = _live(model, tracking_uri, source.key)
        if existing is None:
            raise
        return existing, False
    return item, True


def source_of(item: MlflowImport) -> ops_mlflow.Source:
    kind, _, rest = item.source.partition(":/")
    first, _, second = rest.partition("/")
    if kind == "models":
        return ops_mlflow.Source("model", name=first, version=second)
    return ops_mlflow.Source("run", run_id=first, artifact_path=second or "model")


# Running it (worker) --------------------------------------------------------------------------

def _claim(import_id: int) -> MlflowImport | None:
    """Claim a pending import for this worker (a conditional UPDATE: two deliveries of the
    task never both download it); None when someone else has it or it is finished."""
    now = timezone.now()
    claimed = (MlflowImport.objects.filter(pk=import_id, status=ImportStatus.PENDING)
               .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - CLAIM_STALE_AFTER))
               .update(claimed_at=now))
    if not claimed:
        return None
    return MlflowImport.objects.select_related("model__project", "follow__created_by",
                                               "requested_by").get(pk=import_id)


def run_import(import_id: int, *, final_attempt: bool = True) -> MlflowImport | None:
    """Import one pending MLflow model version: download, convert, register (worker).

    A server that cannot be reached is retried by the task (``TransientError``); on its
    last attempt the import fails with the reason, as every permanent error does. Anything
    else a crafted MLflow answer could raise fails it too (``internal_error``, the type only:
    the traceback goes to the log), never leaving it pending, claimed and blocking its
    source; only the task's time limit and the database's connection errors (the task
    records or retries those) pass through."""
    from celery.exceptions import SoftTimeLimitExceeded

    item = _claim(import_id)
    if item is None:
        return MlflowImport.objects.filter(pk=import_id).first()
    try:
        with tempfile.TemporaryDirectory(prefix="modelgate-mlflow-") as folder:
            return _import(item, Path(folder))
    except TransientError as e:
        if not final_attempt:
            MlflowImport.objects.filter(pk=item.pk).update(claimed_at=None)
            raise
        return _fail(item, f"{getattr(e, 'code', 'transient')}: {getattr(e, 'detail', e)}")
    except (ops_mlflow.MlflowError, ArtifactError) as e:
        return _fail(item, f"{e.code}: {without_paths(e.detail)}")
    except DomainError as e:  # register_version refused it (duplicate, archived, role...)
        return _fail(item, f"{e.code}: {e.detail}")
    except (SoftTimeLimitExceeded, OperationalError, InterfaceError):
        raise  # the task records the time limit, and retries a lost database connection
    except Exception as e:  # noqa: BLE001 - a bug or an input nobody foresaw: fail, in words
        log.exception("mlflow import %s failed unexpectedly", item.pk)
        return _fail(item, f"internal_error: {type(e).__name__} (the portal's log has the "
                           "details)")


def _import(item: MlflowImport, folder: Path) -> MlflowImport:
    actor = item.requested_by or (item.follow.created_by if item.follow else None)
    if actor is None or not actor.is_active or role_in(actor, item.model.project) is None:
        raise ArtifactError("nobody may register it: the person who asked for the import "
                            "(or created the follow) is no longer a member of the project",
                            code="no_actor")
    server = tracking_server(item.tracking_uri)
    try:
        resolved = server.resolve(source_of(item))
        model_file = server.model_file(resolved)
        flavour = model_file.flavour
        downloaded = folder / "model"
        server.download(resolved.artifact_uri, flavour.file, downloaded,
                        settings.MODELGATE_MAX_ARTIFACT_BYTES)
    finally:
        server.close()
    source_sha256 = sha256_file(downloaded)
    artifact = _loadable(item, flavour, downloaded, folder)
    metadata, schema_from = _metadata(item, resolved, model_file)
    with transaction.atomic():
        # The claim holds the import; the row lock orders this with anything reading it.
        locked = MlflowImport.objects.select_for_update().get(pk=item.pk)
        if locked.status != ImportStatus.PENDING:
            return locked
        with open(artifact, "rb") as handle:
            version = register_version(actor, item.model, handle, metadata,
                                       schema_from=schema_from)
        locked.status, locked.reason, locked.version = ImportStatus.DONE, "", version
        locked.run_id, locked.experiment_id = resolved.run_id, resolved.experiment_id
        locked.flavour, locked.artifact_uri = flavour.name, resolved.artifact_uri
        locked.source_sha256, locked.datasets = source_sha256, resolved.datasets
        locked.finished_at = timezone.now()
        locked.save()
        audit.record(None, "mlflow_import.done", locked, changes={
            "source": locked.source, "version": version.number, "run_id": locked.run_id,
            "flavour": flavour.name}, project_id=item.model.project_id)
    return locked


def _loadable(item: MlflowImport, flavour: ops_mlflow.Flavour, path: Path,
              folder: Path) -> Path:
    """The file to register: skops, a native model file, or — for a pickle — its skops
    conversion when every type in it is trusted, else the pickle itself where the project
    accepts pickles (validation converts it in the sandbox, decision 43)."""
    if not flavour.pickled:
        with open(path, "rb") as handle:  # a pickle named model.json is refused here
            ops_mlflow.check_flavour_file(flavour, handle.read(ops_artifacts.HEAD_BYTES))
        return path
    data = path.read_bytes()
    extra = tuple(settings.MODELGATE_SKOPS_TRUSTED_TYPES)
    untrusted = untrusted_globals(data, extra)
    if not untrusted:
        conversion = convert_pickle(data, sandbox_limits(), allowed_globals=pickle_globals(data))
        converted = folder / "model.skops"
        converted.write_bytes(conversion.skops)
        log.info("mlflow import %s: pickle of trusted types converted to skops", item.pk)
        return converted
    if unsafe_allowed(item.model.project):
        return path
    shown = ", ".join(untrusted[:5]) + (f" (and {len(untrusted) - 5} more)"
                                        if len(untrusted) > 5 else "")
    raise ArtifactError(
        f"{flavour.file} is a pickle naming types the portal does not trust ({shown}), and "
        "this project does not accept pickles; log the model with "
        "serialization_format='skops' (MLflow's default since 3.x)", code="unsafe_artifact")


def _metadata(item: MlflowImport, resolved: ops_mlflow.Resolved,
              model_file: ops_mlflow.ModelFile) -> tuple[dict, str | None]:
    commit = resolved.commit if COMMIT.match(resolved.commit or "") else ""
    metadata = {
        "metrics": resolved.metrics,
        "params": resolved.params,
        "code": {"repository": resolved.repository, "commit": commit},
        "description": f"Imported from MLflow {item.source}"
                       + (f" (run {resolved.run_name or resolved.run_id})"
                          if resolved.run_id else ""),
        "tags": ["mlflow"],
    }
    if model_file.input_schema:
        metadata["input_schema"] = model_file.input_schema
        return metadata, None
    return metadata, SchemaSource.AUTO  # no named signature: the model's own feature names


def _fail(item: MlflowImport, reason: str) -> MlflowImport:
    with transaction.atomic():
        locked = MlflowImport.objects.select_for_update().get(pk=item.pk)
        if locked.status != ImportStatus.PENDING:
            return locked
        locked.status, locked.reason = ImportStatus.FAILED, reason[:2000]
        locked.finished_at = timezone.now()
        locked.save(update_fields=["status", "reason", "finished_at"])
        audit.record(None, "mlflow_import.fail", locked, changes={
            "source": locked.source, "reason": locked.reason}, project_id=item.model.project_id)
    return locked


def import_timed_out(import_id: int, reason: str) -> None:
    item = MlflowImport.objects.select_related("model").filter(pk=import_id).first()
    if item is not None:
        _fail(item, f"timed_out: the import {reason}")


# Following a registered model ----------------------------------------------------------------

def follow(user, model: RegisteredModel, *, registered_name: str, alias: str = "",
           tag_key: str = "", tag_value: str = "", tracking_uri: str | None = None
           ) -> MlflowFollow:
    """Import every version of MLflow's ``registered_name`` that has ``alias`` (or the tag
    ``tag_key``=``tag_value``) into ``model`` from now on (contributors)."""
    require_role(user, model.project, Role.CONTRIBUTOR, "follow MLflow models")
    refuse_archived(model)
    if bool(alias) == bool(tag_key):
        raise ValidationFailed("follow either an alias or a tag (key and value)",
                               code="invalid_follow", field="alias")
    if not registered_name:
        raise ValidationFailed("give the MLflow registered model's name",
                               code="invalid_follow", field="registered_name")
    uri = tracking_uri_for(tracking_uri)
    limit = settings.MODELGATE_MLFLOW_MAX_FOLLOWS
    if MlflowFollow.objects.filter(model=model).count() >= limit:
        raise ValidationFailed(f"{model.name} already follows {limit} MLflow models, the most "
                               "a model may (MODELGATE_MLFLOW_MAX_FOLLOWS); stop following "
                               "one first", code="too_many_follows")
    try:
        with transaction.atomic():
            item = MlflowFollow.objects.create(
                model=model, tracking_uri=uri, registered_name=registered_name, alias=alias,
                tag_key=tag_key, tag_value=tag_value, secret=secrets.token_urlsafe(32),
                created_by=user)
            audit.record(user, "mlflow_follow.create", item, changes={
                "tracking_uri": uri, "registered_name": registered_name,
                "selector": item.selector}, project_id=model.project_id)
            enqueue("workers.registry.sync_mlflow_follow", item.pk)
    except IntegrityError as e:
        raise ValidationFailed(f"{model.name} already follows {registered_name} that way",
                               code="duplicate_follow") from e
    return item


def webhook_url(item: MlflowFollow) -> str:
    """Where MLflow delivers a follow's webhook (``receive_webhook``)."""
    return f"{settings.MODELGATE_BASE_URL}/api/v1/mlflow-follows/{item.pk}/webhook/"


@dataclass(frozen=True)
class FollowState:
    """A follow as its page shows it: the failed looks in a row and the last one's error
    (without the count ``sync_follow`` keeps in front of it), when beat looks next (None:
    never looked at, at its next tick), and the newest import the follow asked for."""

    follow: MlflowFollow
    failures: int
    error: str
    next_look_at: datetime | None
    last_import: MlflowImport | None

    @property
    def webhook_url(self) -> str:
        return webhook_url(self.follow)


def follows_of(model: RegisteredModel) -> list[FollowState]:
    """The model's follows with their state (at most MODELGATE_MLFLOW_MAX_FOLLOWS)."""
    states = []
    for item in MlflowFollow.objects.filter(model=model).order_by("created_at", "id"):
        failures = failures_in_a_row(item.last_error)
        wait = backoff_seconds(failures) if failures else \
            max(settings.MODELGATE_MLFLOW_POLL_SECONDS, 1)
        next_look_at = (item.last_checked_at + timedelta(seconds=wait)
                        if item.last_checked_at else None)
        last_import = (item.imports.select_related("version__model__project")
                       .order_by("-created_at", "-id").first())
        states.append(FollowState(item, failures, _FAILURES.sub("", item.last_error),
                                  next_look_at, last_import))
    return states


def unfollow(user, item: MlflowFollow) -> None:
    require_role(user, item.model.project, Role.CONTRIBUTOR, "stop following MLflow models")
    with transaction.atomic():
        audit.record(user, "mlflow_follow.delete", item, changes={
            "registered_name": item.registered_name, "selector": item.selector},
            project_id=item.model.project_id)
        item.delete()


def _followed_versions(server: ops_mlflow.TrackingServer, item: MlflowFollow) -> list[str]:
    if item.alias:
        try:
            return [str(server.version_by_alias(item.registered_name, item.alias)["version"])]
        except ops_mlflow.MlflowNotFound:
            return []  # the alias is not set (yet): nothing to import
    found = server.versions_by_tag(item.registered_name, item.tag_key, item.tag_value)
    numbers = sorted((int(v["version"]) for v in found), reverse=True)
    return [str(n) for n in numbers[:MAX_TAGGED_VERSIONS]]


def sync_follow(follow_id: int) -> list[MlflowImport]:
    """Request an import of each version the follow selects now (worker); idempotent."""
    item = MlflowFollow.objects.select_related("model__project").filter(pk=follow_id).first()
    if item is None or item.model.is_archived or item.model.project.is_archived:
        return []
    error, imports = "", []
    try:
        server = tracking_server(item.tracking_uri)
        try:
            numbers = _followed_versions(server, item)
        finally:
            server.close()
        for number in numbers:
            source = ops_mlflow.Source("model", name=item.registered_name, version=number)
            if _failed_for_good(item, source.key):
                continue  # polled again, it would only fail again (and download again)
            imports.append(_request(item.model, item.tracking_uri, source, follow=item)[0])
    except (ops_mlflow.MlflowError, ops_mlflow.MlflowUnavailable, ValidationFailed) as e:
        error = f"{e.code}: {e.detail}"
        failures = failures_in_a_row(item.last_error) + 1
        if failures > 1:
            error = f"({failures} failures in a row) {error}"
    MlflowFollow.objects.filter(pk=item.pk).update(last_checked_at=timezone.now(),
                                                   last_error=error)
    return imports


def failures_in_a_row(last_error: str) -> int:
    """How many looks in a row failed, as ``sync_follow`` wrote it in ``last_error``."""
    if not last_error:
        return 0
    match = _FAILURES.match(last_error)
    return int(match.group(1)) if match else 1


def backoff_seconds(failures: int) -> float:
    """How long a follow whose last ``failures`` looks failed waits before the next one:
    the poll interval doubled per failure, at most a day."""
    if failures <= 0:
        return 0
    interval = max(settings.MODELGATE_MLFLOW_POLL_SECONDS, 1)
    return min(interval * 2 ** min(failures, 32), MAX_BACKOFF_SECONDS)


def _due(item: MlflowFollow, now) -> bool:
    failures = failures_in_a_row(item.last_error)
    if not failures or item.last_checked_at is None:
        return True
    # Half an interval of slack: beat's ticks and the look's own time do not line up.
    slack = max(settings.MODELGATE_MLFLOW_POLL_SECONDS, 1) / 2
    waited = (now - item.last_checked_at).total_seconds()
    return waited + slack >= backoff_seconds(failures)


# A failure the next poll may not repeat: the server unreachable, or the import timed out.
RETRYABLE_FAILURES = ("mlflow_unavailable:", "transient:", "timed_out:")


def _failed_for_good(item: MlflowFollow, key: str) -> bool:
    failed = MlflowImport.objects.filter(follow=item, source=key, status=ImportStatus.FAILED)
    for prefix in RETRYABLE_FAILURES:
        failed = failed.exclude(reason__startswith=prefix)
    return failed.exists()


def poll_follows() -> int:
    """Beat: ask a worker to look at each follow of a model in use, skipping one whose
    looks keep failing until its back-off has passed; how many were queued."""
    now = timezone.now()
    follows = (MlflowFollow.objects.filter(model__archived_at__isnull=True,
                                           model__project__archived_at__isnull=True)
               .only("pk", "last_checked_at", "last_error"))
    ids = [item.pk for item in follows if _due(item, now)]
    for follow_id in ids:
        send_now("workers.registry.sync_mlflow_follow", follow_id)
    return len(ids)


class WebhookNotAuthenticated(NotAllowed):
    status = 401


def receive_webhook(follow_id: int, headers, body: bytes) -> bool:
    """An MLflow webhook delivery for a follow: its signature checked with the follow's
    secret, it queues a look at MLflow (whose answer, not the payload, says what to import).
    False when the event is about another registered model."""
    item = MlflowFollow.objects.filter(pk=follow_id).first()
    # An unknown follow is checked against a random secret, and every refusal answers the
    # same (code, text, status): follow ids are not probed from outside.
    secret = item.secret if item is not None else secrets.token_urlsafe(32)
    try:
        payload = mlflow_webhooks.verify_webhook(secret, headers, body)
    except mlflow_webhooks.WebhookRefused as e:
        log.info("MLflow webhook for follow %s refused: %s", follow_id, e.code)
        raise WebhookNotAuthenticated(WEBHOOK_REFUSAL, code="bad_signature") from e
    if item is None:  # a random secret matched: not possible in practice
        raise WebhookNotAuthenticated(WEBHOOK_REFUSAL, code="bad_signature")
    name = (payload.get("data") or {}).get("name") if isinstance(payload.get("data"),
                                                                 dict) else None
    if name != item.registered_name:
        return False
    enqueue("workers.registry.sync_mlflow_follow", item.pk)
    return True
