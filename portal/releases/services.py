"""Release operations: environments, approval requests and reviews (four-eyes, gates)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from ops import gates as ops_gates
from ops.redact import without_paths
from ops.rollout.spec import ParameterError, parse_parameters
from portal.accounts.choices import Role
from portal.accounts.services import has_role, require_role, role_in
from portal.audit import services as audit
from portal.errors import NOT_FOUND, Conflict, NotAllowed, NotFound, ValidationFailed
from portal.notifications.services import notify
from portal.queue import enqueue
from portal.registry.choices import VersionStatus
from portal.registry.models import ModelVersion, Project, name_validator
from portal.registry.services.archive import lock_open, refuse_archived
from portal.releases import comparison, targets
from portal.releases.choices import BackendKind, Decision, RequestStatus, Strategy
from portal.releases.comparison import champion_of  # noqa: F401 - re-exported
from portal.releases.models import ApprovalRequest, Environment, Review
from portal.releases.release_alias import default_release_alias

log = logging.getLogger(__name__)

# Strategy parameters of the portal's own beside the rollout's: an A/B test's outcome
# (``portal.experiments.services.outcome_settings``).
PORTAL_PARAMETERS = frozenset({"outcome"})
INVALID_PARAMETERS = "invalid_strategy_params"

ENVIRONMENT_EDITABLE = ("description", "backend", "target", "settings", "required_approvals",
                        "gates", "approval_ttl_hours", "release_alias")


def _resolve_target(fields: dict, environment: Environment | None = None) -> None:
    """Fill ``backend`` and ``target`` from each other and check ``settings`` against the
    target: an environment chooses one of the operator's targets and sets only what it
    allows (unknown keys, hosts, paths, executables and ports are refused)."""
    if not {"backend", "target", "settings"} & set(fields):
        return
    name = fields.get("target") or (environment.target if environment else "")
    backend = fields.get("backend", environment.backend if environment else BackendKind.LOCAL)
    if backend not in BackendKind.values:
        raise ValidationFailed(f"backend must be one of {', '.join(BackendKind.values)}",
                               field="backend")
    if "backend" in fields and "target" not in fields and environment is not None \
            and fields["backend"] != environment.backend:
        name = ""  # a new backend: its default target, unless one is named
    target = targets.target_named(name) if name else targets.default_target(backend)
    if "backend" in fields and fields["backend"] != target.backend:
        raise ValidationFailed(f"target {target.name} is a {target.backend} target, not "
                               f"{fields['backend']}", field="target")
    fields["backend"], fields["target"] = target.backend, target.name
    targets.check_settings(target, fields.get(
        "settings", environment.settings if environment else {}))


def _check_environment_fields(fields: dict) -> None:
    if "gates" in fields:
        try:
            ops_gates.parse_rules(fields["gates"])
        except ops_gates.GateRuleError as e:
            raise ValidationFailed(str(e), field="gates") from e
    if "backend" in fields and fields["backend"] not in BackendKind.values:
        raise ValidationFailed(f"backend must be one of {', '.join(BackendKind.values)}",
                               field="backend")
    if "settings" in fields and not isinstance(fields["settings"], dict):
        raise ValidationFailed("settings must be a JSON object", field="settings")
    if "required_approvals" in fields and not 1 <= int(fields["required_approvals"]) <= 5:
        raise ValidationFailed("required_approvals must be between 1 and 5",
                               field="required_approvals")
    if "release_alias" in fields:
        _check_release_alias(fields["release_alias"])


def _check_release_alias(name) -> None:
    """An alias name, as ``Alias.name`` takes it, or blank (a release moves no alias)."""
    if not isinstance(name, str):
        raise ValidationFailed("release_alias must be an alias name or blank",
                               field="release_alias")
    if name:
        try:
            name_validator(name)
        except DjangoValidationError as e:
            raise ValidationFailed(f"release_alias: {' '.join(e.messages)}",
                                   field="release_alias") from e


def create_environment(user, project: Project, *, name: str, **fields) -> Environment:
    """Create an environment; ``release_alias`` left out (or None) takes the default of its
    name (``release_alias.DEFAULT_RELEASE_ALIASES``: production moves champion)."""
    require_role(user, project, Role.OWNER, "create environments")
    refuse_archived(project)
    unknown = set(fields) - set(ENVIRONMENT_EDITABLE)
    if unknown:
        raise ValidationFailed(f"unknown fields: {', '.join(sorted(unknown))}")
    if fields.get("release_alias") is None:
        fields["release_alias"] = default_release_alias(name)
    _check_environment_fields(fields)
    _resolve_target(fields)
    environment = Environment(project=project, name=name, **fields)
    try:
        environment.full_clean(validate_unique=False, validate_constraints=False)
    except Exception as e:
        raise ValidationFailed(str(e), field="name") from e
    try:
        with transaction.atomic():
            lock_open(project)  # not archived meanwhile
            environment.save()
            audit.record(user, "environment.create", environment,
                         changes={k: getattr(environment, k) for k in ("name", *fields)})
    except IntegrityError as e:
        raise Conflict(f"project {project.slug} already has an environment {name!r}",
                       code="duplicate_environment", field="name") from e
    return environment


def update_environment(user, environment: Environment, **fields) -> Environment:
    require_role(user, environment.project, Role.OWNER, "change environments")
    unknown = set(fields) - set(ENVIRONMENT_EDITABLE)
    if unknown:
        raise ValidationFailed(f"cannot change {', '.join(sorted(unknown))}")
    _check_environment_fields(fields)
    _resolve_target(fields, environment)
    before = {k: getattr(environment, k) for k in fields}
    with transaction.atomic():
        for key, value in fields.items():
            setattr(environment, key, value)
        environment.save(update_fields=list(fields))
        audit.record(user, "environment.update", environment, changes=audit.diff(before, fields))
    return environment




def _check_strategy_params(strategy: str, params, version: ModelVersion,
                           environment: Environment) -> None:
    """Refuse, under one code, parameters that are unknown (named by their path, e.g.
    ``strategy_params.steps[0].bake``) or not of their kind, and those the rollout would
    refuse (``deployments.check_strategy_params``: the spec, the operator's limits, an A/B
    test's outcome)."""
    from portal.releases.deployments import check_strategy_params

    if params is not None and not isinstance(params, dict):
        raise ValidationFailed("strategy_params must be a JSON object", code=INVALID_PARAMETERS,
                               field="strategy_params")
    try:
        parse_parameters(params or {}, also=PORTAL_PARAMETERS)
    except ParameterError as e:
        raise ValidationFailed(f"strategy parameters: {e.detail}", code=INVALID_PARAMETERS,
                               field=".".join(filter(None, ("strategy_params", e.path)))) from e
    try:
        check_strategy_params(strategy, params or {}, version, environment)
    except ValidationFailed as e:
        raise ValidationFailed(e.detail, code=INVALID_PARAMETERS, field=e.field) from e


def request_approval(user, version: ModelVersion, environment: Environment, *,
                     strategy: str = Strategy.CANARY, strategy_params: dict | None = None,
                     reason: str = "", breaking_change: bool = False) -> ApprovalRequest:
    """Open a request; the gates are judged now against the current champion, and the
    version's inputs against those of what the environment serves (``compatibility``)."""
    from portal.releases.compatibility import check_request

    project = version.model.project
    require_role(user, project, Role.CONTRIBUTOR, "request releases")
    if environment.project_id != project.pk:
        if not (user.is_staff or role_in(user, environment.project_id) is not None):
            raise NotFound(NOT_FOUND)  # another project's environment: nothing about it
        raise ValidationFailed(f"environment {environment} is not in project {project.slug}",
                               field="environment")
    refuse_archived(version.model, environment)
    if version.status != VersionStatus.READY:
        raise Conflict(f"{version} is {version.get_status_display().lower()}; only ready versions "
                       "can be released", code="version_not_ready", field="version")
    if strategy not in Strategy.values:
        raise ValidationFailed(f"strategy must be one of {', '.join(Strategy.values)}",
                               field="strategy")
    _check_strategy_params(strategy, strategy_params, version, environment)
    interface_changes = check_request(version, environment, strategy, breaking_change)
    champion = comparison.target_of(version, environment)
    gate_results, gates_passed = comparison.judge(version, environment, champion)
    request = ApprovalRequest(
        version=version, environment=environment, strategy=strategy,
        strategy_params=strategy_params or {}, reason=reason, requested_by=user,
        champion=champion, gate_results=gate_results, gates_passed=gates_passed,
        judged_at=timezone.now(),
        breaking_change=breaking_change, interface_changes=interface_changes)
    try:
        with transaction.atomic():
            # Archiving the model, the environment or the project takes these row locks:
            # either it waits and then sees this open request, or this sees it archived.
            lock_open(version.model, environment)
            request.save()
            audit.record(user, "approval_request.create", request, project_id=project.pk,
                         changes={"version": version.number, "environment": environment.name,
                                  "strategy": strategy, "gates_passed": request.gates_passed,
                                  "breaking_change": breaking_change,
                                  "interface_changes": interface_changes})
    except IntegrityError as e:
        raise Conflict(f"{version} already has an open request for {environment.name}",
                       code="duplicate_request") from e
    notify(project, "release.requested", {
        "request_id": request.pk, "model": version.model.name, "version": version.number,
        "environment": environment.name, "strategy": strategy,
        "requested_by": user.get_username(), "gates_passed": request.gates_passed,
        "breaking_change": breaking_change, "url": request.get_absolute_url()})
    comparison.queue_diff(request)
    return request


def compute_release_diff(request_id: int) -> ApprovalRequest | None:
    """What changes if the requested version replaces the one it is compared with (runs in a
    worker): both models on the evaluation dataset the gates judge (held out, with the true
    labels), or on the candidate's reference data where the project has none."""
    from explainability.diff import release_diff
    from ops.exceptions import OpsError
    from portal.registry.services import explain_version, load_version_model

    request = (ApprovalRequest.objects.select_related("version__model__project",
                                                      "version__dataset", "champion")
               .filter(pk=request_id).first())
    if request is None or request.champion is None:
        return request
    version, champion = request.version, request.champion
    try:
        rows = comparison.diff_rows(version)
        models = [load_version_model(v) for v in (version, champion)]
        explained = [explain_version(v.pk) for v in (version, champion)]
        importance = [e.importance if e is not None and e.status == "ready" else []
                      for e in explained]
        diff = release_diff(models[0], models[1], rows.inputs, task=version.model.task,
                            candidate_metrics=rows.candidate_metrics(version),
                            champion_metrics=rows.candidate_metrics(champion),
                            candidate_importance=importance[0],
                            champion_importance=importance[1], labels=rows.labels,
                            class_labels=version.class_labels)
        diff.update(status="ready", champion_version=champion.number, dataset=rows.name,
                    data=rows.kind)
    except (OpsError, ValueError, KeyError) as e:
        diff = {"status": "failed", "reason": without_paths(getattr(e, "detail", None) or str(e))}
    except Exception as e:  # a model that fails on the reference rows: say so, do not crash
        log.exception("release diff of request %s failed", request_id)
        diff = {"status": "failed", "reason": f"{type(e).__name__}: {without_paths(str(e))}"}
    ApprovalRequest.objects.filter(pk=request.pk).update(release_diff=diff)
    request.release_diff = diff
    return request


def release_diff_timed_out(request_id: int, reason: str) -> None:
    """The diff's task was stopped at its time limit (``portal.celery.BoundedTask``)."""
    ApprovalRequest.objects.filter(pk=request_id).update(
        release_diff={"status": "failed", "reason": f"the release diff {reason}"})


def _expired(request: ApprovalRequest, now) -> bool:
    return now - request.created_at > timedelta(hours=request.environment.approval_ttl_hours)


def approvals_counted(request: ApprovalRequest, now=None) -> list[Review]:
    """Approvals that count: by approvers other than the requester, not older than the TTL."""
    now = now or timezone.now()
    ttl = timedelta(hours=request.environment.approval_ttl_hours)
    project = request.environment.project
    # An approval given before the gates were last judged was given on other evidence.
    since = request.judged_at
    return [r for r in request.reviews.all()
            if r.decision == Decision.APPROVE and r.reviewer_id != request.requested_by_id
            and now - r.created_at <= ttl and has_role(r.reviewer, project, Role.APPROVER)
            and (since is None or r.created_at >= since)]


def review(user, request: ApprovalRequest, decision: str, comment: str, *,
           acknowledge_breaking_change: bool = False) -> ApprovalRequest:
    """Record an approver's decision. Four-eyes: nobody reviews their own request. A
    breaking interface change is approved only with its acknowledgement, which is audited."""
    project = request.environment.project
    comment = _check_review(user, request, decision, comment)
    if decision == Decision.APPROVE and request.breaking_change \
            and not acknowledge_breaking_change:
        raise ValidationFailed(
            "this release is a breaking interface change: callers sending the inputs of the "
            "version serving now will get errors once it serves. Acknowledge it "
            "(acknowledge_breaking_change) to approve", code="acknowledgement_required",
            field="acknowledge_breaking_change")
    if decision == Decision.APPROVE and (changed := comparison.refresh(request)):
        old, new = changed
        serves = comparison.serving(request.environment, new)
        raise Conflict(
            f"v{new.number} {'serves ' + request.environment.name if serves else 'is the champion'}"
            f" now{f', not v{old.number}' if old else ''}: the gates"
            f"{' and the release diff' if settings.MODELGATE_EXPLAIN_VERSIONS else ''} were "
            f"judged again against it (the gates {'pass' if request.gates_passed else 'fail'}); "
            "look at them again before approving", code="stale_comparison")
    if decision == Decision.APPROVE and comparison.rejudge(request):
        request.refresh_from_db()
        raise Conflict(
            "the evidence changed since the gates were judged (a measurement on the evaluation "
            f"data finished or another evaluation dataset was added): they were judged again "
            f"(they {'pass' if request.gates_passed else 'fail'}); look at them again before "
            "approving", code="stale_gates")
    now = timezone.now()
    with transaction.atomic():
        # Two approvers deciding at once must not both see "one approval missing" and
        # neither approve, nor approve a request the other just rejected. The request's row
        # only (``of``): locking the joined environment, project, version and model too, a
        # review waited for a release starting there (``lock_open``) and could deadlock it.
        request = ApprovalRequest.objects.select_for_update(of=("self",)).select_related(
            "environment__project", "version__model").get(pk=request.pk)
        _check_reviewable(user, request, project, decision, now)
        if decision == Decision.APPROVE and comparison.stale(request):
            raise Conflict("the evidence changed a moment ago (what serves, or a measurement); "
                           "look at the gates again before approving", code="stale_gates")
        if request.judged_at is not None:  # a review of older evidence is given again
            request.reviews.filter(reviewer=user, created_at__lt=request.judged_at).delete()
        Review.objects.create(request=request, reviewer=user, decision=decision, comment=comment)
        audit.record(user, f"approval_request.{decision}", request, project_id=project.pk,
                     changes={"comment": comment})
        if decision == Decision.APPROVE and request.breaking_change:
            audit.record(user, "approval_request.acknowledge_breaking_change", request,
                         project_id=project.pk,
                         changes={"interface_changes": request.interface_changes})
        _decide(user, request, project, decision, now)
        _after_decision(user, request, project, comment)
    return request


def _check_review(user, request: ApprovalRequest, decision: str, comment: str) -> str:
    """What can be refused before the request is locked; the comment, stripped."""
    require_role(user, request.environment.project, Role.APPROVER, "review releases")
    if decision not in Decision.values:
        raise ValidationFailed("decision must be approve or reject", field="decision")
    comment = (comment or "").strip()
    if not comment:
        raise ValidationFailed("a comment is required: say why", field="comment")
    if request.requested_by_id == user.pk:
        raise NotAllowed("you requested this release; another approver must review it "
                         "(four-eyes)", code="own_request")
    return comment


def _check_reviewable(user, request: ApprovalRequest, project, decision: str, now) -> None:
    """Refuse a review of the locked request: closed (an open one past its TTL is marked
    expired first), failed gates for an approval, or a second review by the same person."""
    if request.status == RequestStatus.OPEN and _expired(request, now):
        request.status, request.decided_at = RequestStatus.EXPIRED, now
        request.save(update_fields=["status", "decided_at"])
        audit.record(None, "approval_request.expire", request, project_id=project.pk)
        raise Conflict("this request has expired; open a new one", code="request_closed")
    if request.status != RequestStatus.OPEN:
        raise Conflict(f"this request is already {request.get_status_display().lower()}",
                       code="request_closed")
    if decision == Decision.APPROVE and not request.gates_passed:
        raise Conflict("the release gates failed; it cannot be approved (reject it, or "
                       "register a better version)", code="gates_failed")
    mine = request.reviews.filter(reviewer=user)
    if request.judged_at is not None:  # a review of older evidence may be given again
        mine = mine.filter(created_at__gte=request.judged_at)
    if mine.exists():
        raise Conflict("you have already reviewed this request", code="already_reviewed")


def _decide(user, request: ApprovalRequest, project, decision: str, now) -> None:
    """Close the request when this review decides it: any rejection, or the approvals the
    environment requires."""
    if decision == Decision.REJECT:
        request.status, request.decided_at = RequestStatus.REJECTED, now
    elif len(approvals_counted(request, now)) >= request.environment.required_approvals:
        request.status, request.decided_at = RequestStatus.APPROVED, now
    if request.status != RequestStatus.OPEN:
        request.save(update_fields=["status", "decided_at"])
        audit.record(user, "approval_request.decide", request, project_id=project.pk,
                     changes={"status": audit.change(RequestStatus.OPEN, request.status)})


def _after_decision(user, request: ApprovalRequest, project, comment: str) -> None:
    """An approved request is deployed (queued); approvals and rejections are announced."""
    if request.status == RequestStatus.APPROVED:
        enqueue("workers.releases.start_deployment", request.pk,
                recovery="reconcile will retry")
    if request.status in (RequestStatus.APPROVED, RequestStatus.REJECTED):
        notify(project, f"release.{request.status}", {
            "request_id": request.pk, "model": request.version.model.name,
            "version": request.version.number, "environment": request.environment.name,
            "decided_by": user.get_username(), "comment": comment,
            "url": request.get_absolute_url()})


def cancel_request(user, request: ApprovalRequest) -> ApprovalRequest:
    project = request.environment.project
    if request.requested_by_id != user.pk:
        require_role(user, project, Role.OWNER, "cancel someone else's request")
    with transaction.atomic():
        request = ApprovalRequest.objects.select_for_update().get(pk=request.pk)
        if request.status != RequestStatus.OPEN:
            raise Conflict(f"this request is already {request.get_status_display().lower()}",
                           code="request_closed")
        request.status, request.decided_at = RequestStatus.CANCELLED, timezone.now()
        request.save(update_fields=["status", "decided_at"])
        audit.record(user, "approval_request.cancel", request, project_id=project.pk)
    return request


def expire_requests(now=None) -> int:
    """Close open requests older than their environment's approval TTL (run by beat)."""
    now = now or timezone.now()
    expired = 0
    for request in ApprovalRequest.objects.filter(status=RequestStatus.OPEN).select_related(
            "environment"):
        if _expired(request, now):
            updated = ApprovalRequest.objects.filter(pk=request.pk, status=RequestStatus.OPEN) \
                .update(status=RequestStatus.EXPIRED, decided_at=now)
            if updated:
                audit.record(None, "approval_request.expire", request,
                             project_id=request.environment.project_id)
                expired += 1
    return expired
