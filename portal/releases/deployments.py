"""Deployments: turning an approved request into a rollout, and moving it step by step.

``ops.rollout`` decides; this module loads and saves the state, asks Prometheus for the
analysis, hands plans to the environment's backend, and records every step. A Celery task
(``workers.releases.advance_deployment``, queued by name) calls ``advance`` by deployment
id; people call ``command``.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ops import rollout
from ops.analysis import NoAnalyzer, PrometheusAnalyzer
from ops.backends import REGISTRY, get_backend
from ops.backends.base import BackendError, BackendUnavailable, StalePlan
from ops.redact import without_paths
from portal.accounts.choices import Role
from portal.accounts.services import require_role
from portal.audit import services as audit
from portal.errors import Conflict
from portal.experiments import services as experiments
from portal.experiments.signing import signer_for
from portal.notifications.services import notify
from portal.queue import enqueue
from portal.registry.models import ModelVersion
from portal.registry.services.archive import lock_open
from portal.releases import multimodel, release_alias, targets
from portal.releases.choices import RequestStatus, Strategy
from portal.releases.models import ApprovalRequest, Deployment, DeploymentEvent, Environment
from portal.releases.specs import (  # noqa: F401 - re-exported: deployments.variant_of...
    _spec,
    check_strategy_params,
    endpoint_name,
    rollout_limits,
    variant_of,
)

log = logging.getLogger(__name__)
ACTIVE = [s.value for s in rollout.Status if s not in rollout.ENDED]
APPLY_DELAYED = "apply_delayed"
MIN_FOLLOW_UP_SECONDS = 1.0
# What picks a decision up when the broker could not take it: beat's reconcile_deployments.
RECONCILED = "reconcile will retry"


# Building blocks -----------------------------------------------------------------------------

def backend_for(deployment: Deployment):
    """The environment's backend, built from its operator-defined target, the environment's
    per-project settings and what the portal owns: the key its model servers sign
    prediction ids with, the endpoint's owner mark, and for the local backend the folder and
    the port allocated to this endpoint (``portal/releases/targets.py``)."""
    return _backend(deployment.environment, deployment.model)


def _backend(environment: Environment, model):
    options = targets.backend_options(
        environment, model, prediction_key=signer_for(environment.pk, model.pk).to_text())
    return get_backend(environment.backend, options)


def restore_local_servers() -> list[str]:
    """Start again the model servers of local-backend endpoints that still have a plan but
    no running server (after a restart of the machine or of the demo); each serves what its
    latest rollout left it serving, and each multi-model server its last catalog. Returns
    "environment/endpoint" for each started ("environment/name (multi-model)")."""
    latest: dict[tuple[int, str], Deployment] = {}
    for deployment in (Deployment.objects.filter(environment__backend="local")
                       .select_related("environment", "model").order_by("pk")):
        latest[(deployment.environment_id, deployment.endpoint)] = deployment
    started = []
    for d in latest.values():
        try:
            if backend_for(d).restore(d.endpoint):
                started.append(f"{d.environment.name}/{d.endpoint}")
        except BackendError as e:  # e.g. its port is taken by another program now
            log.warning("model server %s/%s not started again: %s", d.environment.name,
                        d.endpoint, e)
    return started + multimodel.restore_servers()


def analyzer(deployment: Deployment | None = None):
    """What measures a deployment's candidate: the backend's own (SageMaker: CloudWatch)
    or else the portal's Prometheus."""
    if deployment is not None:
        own = backend_for(deployment).analyzer()
        if own is not None:
            return own
    if settings.MODELGATE_PROMETHEUS_URL:
        return PrometheusAnalyzer(settings.MODELGATE_PROMETHEUS_URL,
                                  settings.MODELGATE_PROMETHEUS_TOKEN or None)
    return NoAnalyzer()


def serving_version(environment: Environment, model) -> ModelVersion | None:
    """The version the environment serves for ``model``: the last rollout that succeeded."""
    last = (Deployment.objects.filter(environment=environment, model=model,
                                      status=rollout.Status.SUCCEEDED)
            .select_related("candidate__model__project", "candidate__dataset")
            .order_by("-finished_at", "-pk").first())
    return last.candidate if last else None


def _repeated(deployment: Deployment, decision: rollout.Decision) -> DeploymentEvent | None:
    """The last event, when this decision only says it again (a bake tick, another
    inconclusive check, "still paused"): that is an update, not a new line in the log."""
    if decision.plan is not None:
        return None
    last = deployment.events.order_by("-pk").first()
    if last is not None and (last.event, last.status, last.verdict) == (
            str(decision.event), str(decision.state.status), str(decision.verdict or "")):
        return last
    return None


def _record(deployment: Deployment, decision: rollout.Decision, *, actor: str = "",
            queries: dict | None = None, reason: str | None = None) -> DeploymentEvent:
    reason = reason if reason is not None else decision.reason
    last = None if actor else _repeated(deployment, decision)
    if last is not None:
        last.reason, last.queries = reason, queries or last.queries
        # Each measurement says when it was taken: the event's own time is the first check's.
        at = timezone.now().isoformat()
        last.measurements = [{**m.to_dict(), "at": at} for m in decision.measurements] \
            or last.measurements
        last.save(update_fields=["reason", "queries", "measurements"])
        return last
    plan = decision.plan
    return DeploymentEvent.objects.create(
        deployment=deployment, event=str(decision.event), status=str(decision.state.status),
        reason=reason, actor=actor,
        verdict=str(decision.verdict or ""),
        measurements=[m.to_dict() for m in decision.measurements], queries=queries or {},
        weights=plan.weights() if plan else {}, generation=plan.generation if plan else None)


NOTIFIED = {rollout.Status.SUCCEEDED: "rollout.succeeded",
            rollout.Status.ROLLED_BACK: "rollout.rolled_back",
            rollout.Status.FAILED: "rollout.failed", rollout.Status.PAUSED: "rollout.paused"}


def _notify(deployment: Deployment, old: rollout.RolloutState, decision: rollout.Decision,
            actor: str = "") -> None:
    """Tell the project when a rollout ends or stops for a person."""
    status = decision.state.status
    if status == old.status or status not in NOTIFIED:
        return
    payload = {"deployment_id": deployment.pk, "model": deployment.model.name,
               "version": deployment.candidate.number,
               "stable_version": deployment.stable.number if deployment.stable_id else None,
               "environment": deployment.environment.name, "strategy": deployment.strategy,
               "status": str(status), "reason": decision.reason,
               "url": deployment.get_absolute_url()}
    if actor:
        payload["actor"] = actor
    notify(deployment.environment.project, NOTIFIED[status], payload)


def _claim(deployment: Deployment, old_step: int, decision: rollout.Decision) -> bool:
    """Persist a decision only if nobody moved the deployment since ``old_step``."""
    state = decision.state
    now = timezone.now()
    fields = {"state": state.to_dict(), "step_id": state.step_id, "status": str(state.status),
              "next_check_at": (now + timedelta(seconds=decision.wait_seconds)
                                if decision.wait_seconds is not None else None),
              "updated_at": now}
    if state.ended:
        fields["finished_at"] = now
    claimed = Deployment.objects.filter(pk=deployment.pk, step_id=old_step).update(**fields)
    if claimed:
        for key, value in fields.items():
            setattr(deployment, key, value)
    return bool(claimed)


def _schedule(deployment: Deployment, wait_seconds: float | None) -> None:
    """Queue the next decision once the transaction commits (a follow-up with a countdown:
    the tests' eager queue leaves it to them, see ``portal.queue``)."""
    if wait_seconds is None:
        return
    # At most a decision a second per rollout, whatever its spec says: specs stored before
    # the interval limits existed may still ask for a check every millisecond.
    countdown = max(float(wait_seconds), MIN_FOLLOW_UP_SECONDS)
    enqueue("workers.releases.advance_deployment", deployment.pk, deployment.step_id,
            countdown=countdown, recovery=RECONCILED)


def _apply(deployment: Deployment, spec: rollout.RolloutSpec,
           decision: rollout.Decision) -> rollout.Decision:
    """Apply a decision's plan without waiting for it to be served (the next decision looks:
    no task holds a worker waiting for a server); a refusal becomes the engine's
    ``apply_failed`` decision, a newer plan on the endpoint stops the rollout."""
    if decision.plan is None:
        return decision
    try:
        backend_for(deployment).apply(decision.plan, wait=False)
    except StalePlan as e:
        return _superseded(deployment, spec, decision.state, e) or decision
    except BackendUnavailable as e:
        _delayed(deployment, decision, e)
        return decision
    except BackendError as e:
        return _refused(deployment, spec, decision.state, str(e))
    return decision


def _delayed(deployment: Deployment, decision: rollout.Decision, error: Exception) -> None:
    """The backend away: the decision stands and the next advance converges to it (see
    ``advance``), also when it ended the rollout (a rollback while the platform was away)."""
    DeploymentEvent.objects.create(
        deployment=deployment, event=APPLY_DELAYED, status=str(decision.state.status),
        reason=f"the backend could not be reached ({without_paths(str(error))}); retrying")
    retry_at = timezone.now() + timedelta(seconds=5)
    Deployment.objects.filter(pk=deployment.pk).update(next_check_at=retry_at)
    deployment.next_check_at = retry_at
    _schedule(deployment, 5.0)


def _refused(deployment: Deployment, spec: rollout.RolloutSpec, state: rollout.RolloutState,
             detail: str) -> rollout.Decision:
    """The backend refused the plan of ``state`` for good: the engine's ``apply_failed``
    (roll back, or failed), recorded and applied."""
    refusal = rollout.apply_failed(spec, state, without_paths(detail))
    if _claim(deployment, state.step_id, refusal):
        _record(deployment, refusal)
        _notify(deployment, state, refusal)
        if refusal.plan is not None:
            try:
                backend_for(deployment).apply(refusal.plan, wait=False)
            except BackendUnavailable as e:  # the next advance converges to it
                _delayed(deployment, refusal, e)
            except BackendError as again:
                DeploymentEvent.objects.create(
                    deployment=deployment, event="apply_failed", status=str(refusal.state.status),
                    reason="the stable-only plan could not be applied either: "
                           f"{without_paths(str(again))}")
    return refusal


def _superseded(deployment: Deployment, spec: rollout.RolloutSpec,
                state: rollout.RolloutState, error: StalePlan) -> rollout.Decision | None:
    """The endpoint records a newer plan than this rollout's (``StalePlan``): someone moved
    on. The rollout stops and applies nothing (never retried, never rolled back)."""
    if state.ended:
        _mark_superseded(deployment, without_paths(str(error)))
        return None
    decision = rollout.superseded(spec, state, without_paths(str(error)))
    if _claim(deployment, state.step_id, decision):
        _record(deployment, decision)
        _notify(deployment, state, decision)
    return decision


def _mark_superseded(deployment: Deployment, why: str) -> None:
    Deployment.objects.filter(pk=deployment.pk).update(next_check_at=None)
    DeploymentEvent.objects.create(
        deployment=deployment, event="superseded", status=deployment.status,
        reason=f"{why}: this rollout's final plan is not applied")


# Operations ----------------------------------------------------------------------------------

def start_deployment(request_id: int) -> Deployment | None:
    """Create the deployment for an approved request and take its first step (idempotent)."""
    request = (ApprovalRequest.objects.select_related(
        "environment__project", "version__model__project", "version__dataset", "requested_by")
        .filter(pk=request_id, status=RequestStatus.APPROVED).first())
    if request is None:
        return None
    existing = Deployment.objects.filter(request=request).first()
    if existing is not None:
        return existing
    environment, version = request.environment, request.version
    model = version.model
    endpoint = endpoint_name(environment, model)
    stable = serving_version(environment, model)
    strategy = request.strategy
    note = ""
    if stable is None and strategy != Strategy.DIRECT:
        note = (f"first release of {model.name} in {environment.name}: there is no stable "
                f"version to compare with, so it is deployed directly")
        strategy = Strategy.DIRECT
    if stable is not None and stable.pk == version.pk:
        raise Conflict(f"{version} already serves {environment.name}", code="already_serving")
    spec = _spec(strategy, request.strategy_params, endpoint, version, stable)
    if "serve_timeout_seconds" not in (request.strategy_params or {}):
        spec = replace(spec, serve_timeout_seconds=REGISTRY[environment.backend]
                       .serve_timeout_seconds)
    if request.breaking_change:
        # The interface changes on purpose: callers still on the old one are refused (4xx)
        # by design, which is no verdict on the candidate.
        spec = replace(spec, thresholds=replace(spec.thresholds, max_client_error_excess=None))
    from portal.releases import compatibility  # it imports this module

    with transaction.atomic():
        lock_open(model, environment)  # archived since it was approved: it does not start
        if Deployment.objects.filter(environment=environment, model=model,
                                     status__in=ACTIVE).exists():
            raise Conflict(f"another rollout of {model.name} is in progress in "
                           f"{environment.name}", code="rollout_in_progress")
        generation = _current_generation(environment, model, endpoint)
        deployment = Deployment.objects.create(
            environment=environment, request=request, model=model, candidate=version,
            stable=stable, endpoint=endpoint, strategy=strategy, spec=spec.to_dict(),
            state=rollout.RolloutState.initial(generation).to_dict(), step_id=0,
            status=rollout.Status.PENDING, created_by=request.requested_by,
            next_check_at=timezone.now())
        if note:
            DeploymentEvent.objects.create(deployment=deployment, event="note",
                                           status=rollout.Status.PENDING, reason=note)
        if strategy == Strategy.AB:
            # Its split will be the next plan: predictions carrying that generation are
            # the test's.
            experiments.create_for(deployment, generation + 1)
        audit.record(None, "deployment.create", deployment, project_id=environment.project_id,
                     changes={"candidate": version.number, "stable": stable.number if stable
                              else None, "strategy": strategy})
        # Inputs unlike what serves now: recorded failed with the deployment, no traffic.
        stopped = compatibility.stopped_before_traffic(deployment)
    if not stopped:
        advance(deployment.pk)
    return Deployment.objects.get(pk=deployment.pk)


def _current_generation(environment: Environment, model, endpoint: str) -> int:
    """The generation the next rollout starts from: the last one recorded here, or what the
    endpoint records if higher (the database restored from an older backup: a plan from
    the records alone would be refused as stale, or collide with another)."""
    last = (Deployment.objects.filter(environment=environment, model=model)
            .order_by("-pk").values_list("state", flat=True).first())
    recorded = int(last.get("generation", 0)) if last else 0
    try:
        observed = _backend(environment, model).observe(endpoint).generation
    except (BackendError, BackendUnavailable) as e:
        log.info("cannot read %s's generation from its backend: %s", endpoint, e)
        observed = None
    return max(recorded, observed or 0)


def _converge(deployment: Deployment, spec: rollout.RolloutSpec,
              state: rollout.RolloutState) -> tuple[bool, rollout.Served | None]:
    """Apply (again) the plan the state calls for, and what the backend serves; False when
    the rollout stopped on the way (the endpoint moved on, or refused the plan).

    If an earlier apply was lost (backend away, worker killed after the decision was
    saved), the plan is applied again; backends are declarative, so this is a no-op when
    the endpoint already serves it, and a backend still away raises BackendUnavailable (the
    task retries this same step). Nothing waits for the server: the next decision looks.
    """
    current = rollout.current_plan(spec, state)
    if current is None:
        return True, None
    try:
        observed = backend_for(deployment).apply(current, wait=False)
    except StalePlan as e:
        _superseded(deployment, spec, state, e)
        return False, None
    except BackendError as e:  # refused for good now: never retried for ever
        refused = str(e)
    else:
        refused = observed.refused if observed.generation != current.generation else ""
    if refused:  # at once, or seen since (a model the server cannot load)
        refusal = _refused(deployment, spec, state, refused)
        _schedule(deployment, refusal.wait_seconds)
        return False, None
    return True, rollout.Served(observed.generation, observed.ready, observed.detail)


def _serving_for(deployment: Deployment, state: rollout.RolloutState,
                 served: rollout.Served | None) -> float:
    """Seconds since the backend was first seen serving this rollout's plan (recorded the
    first time); no analysis window reaches back past it. Infinite when unknown."""
    if deployment.serving_since is None and served is not None and served.ready \
            and served.generation is not None and served.generation > state.base_generation:
        now = timezone.now()
        Deployment.objects.filter(pk=deployment.pk, serving_since__isnull=True).update(
            serving_since=now)
        deployment.serving_since = now
    if deployment.serving_since is None:
        return float("inf")
    return max(time.time() - deployment.serving_since.timestamp(), 1.0)


def advance(deployment_id: int, expected_step: int | None = None) -> Deployment | None:
    """Take the next decision for a deployment (a task runs this; so does reconcile)."""
    deployment = (Deployment.objects.select_related("environment__project", "model")
                  .filter(pk=deployment_id).first())
    if deployment is None:
        return None
    if deployment.status not in ACTIVE:
        _converge_ended(deployment)
        return deployment
    if expected_step is not None and deployment.step_id != expected_step:
        return deployment  # a newer decision was taken since this task was queued
    spec = rollout.RolloutSpec.from_dict(deployment.spec)
    state = rollout.RolloutState.from_dict(deployment.state)
    converged, served = _converge(deployment, spec, state)
    if not converged:
        return deployment
    if (spec.strategy == rollout.Strategy.BLUEGREEN and state.step == 0
            and state.status == rollout.Status.PROGRESSING):
        _smoke_candidate(deployment, spec)
    measured = None
    if state.status not in (rollout.Status.PENDING, rollout.Status.PROMOTING):
        # The step's own traffic (at least 30 s, at most an hour): a 10 % canary on a quiet
        # endpoint gathers its minimum sample over the bake instead of never reaching it.
        since_step = time.time() - state.step_started_at if state.step_started_at else 0.0
        window = int(min(max(spec.check_interval_seconds, 30.0, since_step), 3600.0,
                         max(_serving_for(deployment, state, served),
                             spec.check_interval_seconds)))
        # What the stable lacks now (no traffic at 100 %) is taken over the rollout so far.
        baseline = int(min(time.time() - deployment.created_at.timestamp(), 6 * 3600.0))
        measured = analyzer(deployment).measure(
            deployment.endpoint, window, shadow=spec.strategy == rollout.Strategy.SHADOW,
            environment=deployment.environment.name, baseline_seconds=baseline,
            project=deployment.environment.project.slug)
    decision = rollout.decide(spec, state, measured.analysis if measured else None, time.time(),
                              served=served)
    with transaction.atomic():
        if not _claim(deployment, state.step_id, decision):
            return deployment
        reason = decision.reason
        if measured is not None and measured.error:
            reason = f"{reason} ({measured.error})"
        _record(deployment, decision, queries=measured.queries if measured else None,
                reason=reason)
        _notify(deployment, state, decision)
        release_alias.on_decision(deployment, state, decision)  # success moves the alias
        _schedule(deployment, decision.wait_seconds)
    final = _apply(deployment, spec, decision)
    if final is not decision:
        _schedule(deployment, final.wait_seconds)
    return deployment


def _smoke_candidate(deployment: Deployment, spec: rollout.RolloutSpec) -> None:
    """Blue/green's check: the idle candidate gets no live traffic, so it is sent requests
    made of its dataset's rows (or one row of zeros) to give the analysis a sample."""
    from portal.registry.services import sample_rows

    features = [f["name"] for f in deployment.candidate.input_schema]
    try:
        rows = sample_rows(deployment.candidate, features)
    except Exception as e:  # noqa: BLE001 - a missing dataset only means synthetic rows
        log.info("no dataset rows for the smoke check of %s: %s", deployment, e)
        rows = None
    rows = rows[:5].tolist() if rows is not None and len(rows) else [[0.0] * len(features)]
    backend_for(deployment).smoke(deployment.endpoint, rollout.CANDIDATE, rows,
                                  spec.thresholds.min_requests)


def _converge_ended(deployment: Deployment) -> None:
    """Apply an ended rollout's final plan if the backend was away when it was decided, and
    only while no later rollout of the model in the environment exists: a finished rollout
    never puts its plan back over a newer one (the backends refuse an older generation too)."""
    last = deployment.events.order_by("-pk").first()
    if last is None or last.event != APPLY_DELAYED:
        return
    newer = Deployment.objects.filter(environment_id=deployment.environment_id,
                                      model_id=deployment.model_id, pk__gt=deployment.pk)
    if newer.exists():
        _mark_superseded(deployment, "a later rollout of this model took over the endpoint")
        return
    spec = rollout.RolloutSpec.from_dict(deployment.spec)
    plan = rollout.current_plan(spec, rollout.RolloutState.from_dict(deployment.state))
    if plan is not None:
        try:
            backend_for(deployment).apply(plan, wait=False)  # still away: raises, retried
        except StalePlan as e:
            _mark_superseded(deployment, without_paths(str(e)))
            return
    Deployment.objects.filter(pk=deployment.pk).update(next_check_at=None)
    DeploymentEvent.objects.create(deployment=deployment, event="applied",
                                   status=deployment.status, weights=plan.weights() if plan
                                   else {}, generation=plan.generation if plan else None,
                                   reason="the backend is reachable again: the final plan "
                                          "is applied")


def _as_it_is_now(deployment: Deployment) -> tuple[rollout.RolloutSpec, rollout.RolloutState]:
    """The rollout's spec and state for a person's act: decide from the state as it is now,
    not as it was shown."""
    deployment.refresh_from_db()
    return (rollout.RolloutSpec.from_dict(deployment.spec),
            rollout.RolloutState.from_dict(deployment.state))


@contextmanager
def _refusal_as_conflict():
    """Ops refusing a person's act (a RolloutError) is a Conflict, with its code."""
    try:
        yield
    except rollout.RolloutError as e:
        raise Conflict(e.detail, code=e.code) from e


def _claim_or_conflict(deployment: Deployment, old_step: int, decision: rollout.Decision):
    """Persist a person's decision (``_claim``); a Conflict if the rollout moved meanwhile."""
    if not _claim(deployment, old_step, decision):
        raise Conflict("the rollout moved on while you decided; look again",
                       code="rollout_moved")


def command(user, deployment: Deployment, name: str, comment: str = "") -> Deployment:
    """A person's pause, resume, promote, rollback or keep, applied at once and audited
    with their ``comment`` (why), which the rollout's log shows too."""
    comment = (comment or "").strip()[:1000]
    project = deployment.environment.project
    needed = Role.CONTRIBUTOR if name in ("pause", "rollback") else Role.APPROVER
    require_role(user, project, needed, f"{name} rollouts")
    spec, state = _as_it_is_now(deployment)
    with _refusal_as_conflict():
        decision = rollout.command(spec, state, name, time.time(), actor=user.get_username())
    with transaction.atomic():
        _claim_or_conflict(deployment, state.step_id, decision)
        _record(deployment, decision, actor=user.get_username(),
                reason=f"{decision.reason} — “{comment}”" if comment else None)
        _notify(deployment, state, decision, actor=user.get_username())
        release_alias.on_decision(deployment, state, decision)
        audit.record(user, f"deployment.{name}", deployment, project_id=project.pk,
                     changes={"status": audit.change(str(state.status), str(decision.state.status)),
                              **({"comment": comment} if comment else {})})
        _schedule(deployment, decision.wait_seconds)
    _apply(deployment, spec, decision)
    return deployment


def extend(user, deployment: Deployment, seconds: float) -> Deployment:
    """Run an A/B or shadow comparison longer (same split, same plan), audited."""
    project = deployment.environment.project
    require_role(user, project, Role.APPROVER, "extend rollouts")
    spec, state = _as_it_is_now(deployment)
    with _refusal_as_conflict():
        new_spec, decision = rollout.extend(spec, state, seconds, time.time(),
                                            actor=user.get_username())
    with transaction.atomic():
        _claim_or_conflict(deployment, state.step_id, decision)
        Deployment.objects.filter(pk=deployment.pk).update(spec=new_spec.to_dict())
        deployment.spec = new_spec.to_dict()
        _record(deployment, decision, actor=user.get_username())
        _notify(deployment, state, decision, actor=user.get_username())
        audit.record(user, "deployment.extend", deployment, project_id=project.pk,
                     changes={"duration_seconds": audit.change(spec.duration_seconds,
                                                               new_spec.duration_seconds)})
        _schedule(deployment, decision.wait_seconds)
    return deployment


def reconcile(now=None) -> int:
    """Re-queue active deployments whose next decision is overdue (lost task, dead worker)."""
    now = now or timezone.now()
    # Late by more than the grace: its task was lost (broker restarted, worker killed).
    grace = timedelta(seconds=settings.MODELGATE_RECONCILE_GRACE_SECONDS)
    # Active rollouts, and ended ones whose final plan still waits for its backend.
    overdue = Deployment.objects.filter(next_check_at__lt=now - grace)
    count = 0
    for deployment_id, step_id in overdue.values_list("pk", "step_id"):
        enqueue("workers.releases.advance_deployment", deployment_id, step_id,
                recovery=RECONCILED)
        count += 1
    # Approved requests whose start was lost (queued while the broker was away).
    unstarted = ApprovalRequest.objects.filter(status=RequestStatus.APPROVED,
                                               deployment__isnull=True,
                                               decided_at__lt=now - grace)
    for request_id in unstarted.values_list("pk", flat=True):
        enqueue("workers.releases.start_deployment", request_id, recovery=RECONCILED)
        count += 1
    return count
