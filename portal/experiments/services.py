"""A/B experiments: creating one per A/B rollout, taking feedback, reading results, deciding.

Feedback is joined to its variant through the prediction id alone: the id is signed by the
endpoint's model server (``ops.serving.ids``), so the variant it names is the one that
answered, and the key id plus the plan generation it carries name the experiment. Every
accepted outcome adds to its variant's running n, sum and sum of squares in the same
transaction that stores it (once: the prediction id is unique), so readouts cost O(1).
Outcomes should be one per unit (user): the statistics treat them as independent.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Q
from django.db.models.functions import Coalesce, Least
from django.utils import timezone

from explainability import abtest
from ops import rollout
from ops.serving.ids import parse_prediction_id, verify
from portal.accounts.choices import Role
from portal.accounts.services import has_role, require_role, role_in
from portal.audit import services as audit
from portal.audit.activity import count_feedback
from portal.errors import Conflict, PayloadTooLarge, ValidationFailed
from portal.experiments.choices import DecisionChoice, OutcomeKind
from portal.experiments.models import (
    BUCKET_SECONDS,
    Experiment,
    ExperimentDecision,
    Outcome,
    OutcomeBucket,
    VariantTotal,
)
from portal.experiments.signing import key_for, key_id

log = logging.getLogger(__name__)

VARIANTS = (rollout.STABLE, rollout.CANDIDATE)
LETTERS = {rollout.STABLE: "A", rollout.CANDIDATE: "B"}
_CHUNK = 500  # rows per INSERT statement


# Creation -----------------------------------------------------------------------------------

def outcome_settings(params: dict, task: str) -> dict:
    """The ``outcome`` block of an A/B request's strategy parameters, checked and completed:
    ``{"metric": "conversion", "kind": "binary", "higher_is_better": true}``. The kind
    defaults to binary for classifiers and numeric for regressors."""
    raw = (params or {}).get("outcome", {})
    if not isinstance(raw, dict):
        raise ValidationFailed("strategy parameters: outcome must be an object with metric, "
                               "kind and higher_is_better", field="strategy_params")
    unknown = sorted(set(raw) - {"metric", "kind", "higher_is_better"})
    if unknown:
        raise ValidationFailed(f"strategy parameters: unknown outcome settings {unknown}; "
                               "valid: metric, kind, higher_is_better", field="strategy_params")
    default_kind = OutcomeKind.BINARY if task == "classification" else OutcomeKind.NUMERIC
    kind = raw.get("kind", default_kind)
    if kind not in OutcomeKind.values:
        raise ValidationFailed(f"strategy parameters: outcome kind must be one of "
                               f"{', '.join(OutcomeKind.values)}", field="strategy_params")
    metric = raw.get("metric", "conversion" if kind == OutcomeKind.BINARY else "outcome")
    if not isinstance(metric, str) or not 0 < len(metric.strip()) <= 64:
        raise ValidationFailed("strategy parameters: outcome metric is a name of 1 to 64 "
                               "characters", field="strategy_params")
    better = raw.get("higher_is_better", True)
    if not isinstance(better, bool):
        raise ValidationFailed("strategy parameters: outcome higher_is_better is true or false",
                               field="strategy_params")
    return {"metric": metric.strip(), "kind": str(kind), "higher_is_better": better}


def create_for(deployment, generation: int) -> Experiment:
    """The experiment of an A/B deployment whose split will be plan ``generation``."""
    params = deployment.request.strategy_params if deployment.request_id else {}
    spec = rollout.RolloutSpec.from_dict(deployment.spec)
    outcome = outcome_settings(params, deployment.model.task)
    return Experiment.objects.create(
        deployment=deployment, split=spec.split, generation=generation,
        key_id=key_id(deployment.environment_id, deployment.model_id), **outcome)


def is_finished(experiment: Experiment) -> bool:
    return experiment.deployment.status in {str(s) for s in rollout.ENDED}


def status_of(experiment: Experiment) -> str:
    """running, awaiting_decision, paused, promoted, kept, rolled_back or failed."""
    status = experiment.deployment.status
    return {"succeeded": "promoted", "promoting": "promoted", "kept_stable": "kept",
            "progressing": "running", "pending": "running"}.get(status, status)


# Feedback -----------------------------------------------------------------------------------

@dataclass
class FeedbackResult:
    accepted: int = 0
    duplicates: int = 0
    errors: list[dict] = field(default_factory=list)

    def reject(self, index: int, prediction_id, code: str, detail: str) -> None:
        self.errors.append({"index": index, "prediction_id": prediction_id if
                            isinstance(prediction_id, str) else None,
                            "code": code, "detail": detail})

    def to_dict(self) -> dict:
        return {"accepted": self.accepted, "duplicates": self.duplicates,
                "rejected": len(self.errors), "errors": self.errors}


def _outcome_value(raw, kind: str) -> float | None:
    if isinstance(raw, bool):
        return float(raw)
    if not isinstance(raw, (int, float)):
        return None
    value = float(raw)
    if not math.isfinite(value):
        return None
    if kind == OutcomeKind.BINARY and value not in (0.0, 1.0):
        return None
    return value


def record_feedback(user, items) -> FeedbackResult:
    """Store outcomes ``[{"prediction_id": ..., "outcome": ...}, ...]``; each item is
    accepted, a duplicate (same id, same outcome: nothing changes) or rejected with a code.

    Codes: ``invalid_item``, ``malformed_id``, ``unsigned_id``, ``invalid_signature`` (not
    issued by this portal's model servers, or altered), ``unknown_prediction`` (no A/B test
    took it), ``not_found`` (a project you are not in), ``permission_denied`` (viewers),
    ``test_finished``, ``unknown_variant``, ``invalid_outcome``, ``conflicting_outcome``
    (the id already has another outcome; the first stands).

    Items are judged in two passes (their ids alone, then against their tests), and the
    accepted ones stored by ``_store``, which takes its locks in one order.
    """
    _check_batch(items)
    result = FeedbackResult()
    candidates = _signed_candidates(items, result)
    if not candidates:
        return result
    rows = _rows_to_store(user, candidates, _experiments_of(candidates), result)
    if rows:
        _store(rows, result)
    return result


def _check_batch(items) -> None:
    if not isinstance(items, list) or not items:
        raise ValidationFailed("send a list of {prediction_id, outcome} items", field="items")
    limit = settings.MODELGATE_FEEDBACK_MAX_BATCH
    if len(items) > limit:
        raise PayloadTooLarge(f"{len(items)} items in one request; at most {limit}",
                              code="batch_too_large")


def _signed_candidates(items: list, result: FeedbackResult) -> list[tuple]:
    """The items whose prediction id parses and carries a valid signature, as
    ``(index, id text, parsed id, raw outcome)``; the others are rejected."""
    keys: dict[str, bytes] = {}
    candidates = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or "prediction_id" not in item or "outcome" not in item:
            result.reject(index, None, "invalid_item",
                          "each item is an object with prediction_id and outcome")
            continue
        text = item["prediction_id"]
        try:
            pid = parse_prediction_id(text)
        except ValueError as e:
            result.reject(index, text, "malformed_id", str(e))
            continue
        if not pid.signed:
            result.reject(index, text, "unsigned_id",
                          "this id is unsigned: its model server ran without a prediction-id "
                          "key, so the variant it names cannot be trusted")
            continue
        key = keys.get(pid.kid)
        if key is None:
            key = keys[pid.kid] = key_for(pid.kid)
        if not verify(pid, key):
            result.reject(index, text, "invalid_signature",
                          "the id's signature does not match: it was not issued by a model "
                          "server of this portal, or it was altered")
            continue
        candidates.append((index, text, pid, item["outcome"]))
    return candidates


def _experiments_of(candidates: list[tuple]) -> dict[tuple[str, int], Experiment]:
    """The experiments the ids name, by (key id, plan generation), in one query."""
    pairs = {(pid.kid, pid.generation) for _, _, pid, _ in candidates}
    where = Q()
    for kid, generation in pairs:
        where |= Q(key_id=kid, generation=generation)
    return {(e.key_id, e.generation): e for e in Experiment.objects.filter(where)
            .select_related("deployment__environment__project")}


def _rows_to_store(user, candidates: list[tuple], experiments: dict,
                   result: FeedbackResult) -> dict[str, tuple]:
    """The outcomes to store, ``{id text: (index, experiment, variant, value)}``: those of a
    running test the user may send feedback to, with a valid variant and value; the others
    are rejected, and an id repeated in the batch counts once."""
    allowed: dict[int, str | None] = {}
    rows: dict[str, tuple] = {}
    for index, text, pid, raw in candidates:
        experiment = experiments.get((pid.kid, pid.generation))
        if experiment is None:
            result.reject(index, text, "unknown_prediction",
                          "no A/B test took this prediction: it was made before or after "
                          "one, or by a rollout that is not an A/B test")
            continue
        problem = allowed.get(experiment.pk, "")
        if problem == "":
            problem = allowed[experiment.pk] = _feedback_refusal(user, experiment)
        if problem:
            code, detail = problem
            result.reject(index, text, code, detail)
            continue
        if pid.variant not in VARIANTS:
            result.reject(index, text, "unknown_variant",
                          f"variant {pid.variant!r} is not one of the test's (stable, candidate)")
            continue
        value = _outcome_value(raw, experiment.kind)
        if value is None:
            expected = ("0 or 1 (or true/false)" if experiment.kind == OutcomeKind.BINARY
                        else "a finite number")
            result.reject(index, text, "invalid_outcome",
                          f"the outcome of this test ({experiment.metric}) is {expected}")
            continue
        if text in rows:
            if rows[text][3] == value:
                result.duplicates += 1
            else:
                result.reject(index, text, "conflicting_outcome",
                              "the same prediction appears twice with different outcomes")
            continue
        rows[text] = (index, experiment, pid.variant, value)
    return rows


def _feedback_refusal(user, experiment: Experiment) -> tuple[str, str] | None:
    project = experiment.deployment.environment.project
    role = role_in(user, project)
    if role is None:
        return "not_found", "no A/B test of yours took this prediction"
    if not has_role(user, project, Role.CONTRIBUTOR):
        return "permission_denied", (f"you need the contributor role in project {project} "
                                     f"to send feedback (you are {role})")
    if is_finished(experiment):
        return "test_finished", (f"the A/B test has ended ({status_of(experiment)}); "
                                 "outcomes are no longer counted")
    return None


def _store(rows: dict[str, tuple], result: FeedbackResult) -> None:
    now = timezone.now()
    period = datetime.fromtimestamp(now.timestamp() // BUCKET_SECONDS * BUCKET_SECONDS, UTC)
    # Every batch takes its row locks in the same order (ids, then totals by experiment and
    # variant): two batches locking the same rows in opposite orders deadlock, and
    # PostgreSQL then fails one of them (found by benchmarks/portal_load.py).
    texts = sorted(rows)
    outcome, total, bucket = (Outcome._meta.db_table, VariantTotal._meta.db_table,
                              OutcomeBucket._meta.db_table)
    with transaction.atomic(), connection.cursor() as cursor:
        inserted: set[str] = set()
        for start in range(0, len(texts), _CHUNK):
            chunk = texts[start:start + _CHUNK]
            values = []
            for text in chunk:
                _, experiment, variant, value = rows[text]
                values += [experiment.pk, text, variant, value, now]
            cursor.execute(
                f"INSERT INTO {outcome} (experiment_id, prediction_id, variant, value, "
                f"received_at) VALUES {', '.join(['(%s, %s, %s, %s, %s)'] * len(chunk))} "
                "ON CONFLICT (prediction_id) DO NOTHING RETURNING prediction_id", values)
            inserted.update(r[0] for r in cursor.fetchall())
        sums: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
        for text in inserted:
            _, experiment, variant, value = rows[text]
            s = sums[(experiment.pk, variant)]
            s[0] += 1
            s[1] += value
            s[2] += value * value
        for (experiment_id, variant), (n, s1, s2) in sorted(sums.items()):
            cursor.execute(
                f"INSERT INTO {total} (experiment_id, variant, n, total, total_sq) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (experiment_id, variant) DO UPDATE "
                f"SET n = {total}.n + excluded.n, total = {total}.total + excluded.total, "
                f"total_sq = {total}.total_sq + excluded.total_sq",
                [experiment_id, variant, n, s1, s2])
            cursor.execute(
                f"INSERT INTO {bucket} (experiment_id, variant, starts_at, n, total, total_sq) "
                "VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (experiment_id, variant, starts_at) "
                f"DO UPDATE SET n = {bucket}.n + excluded.n, "
                f"total = {bucket}.total + excluded.total, "
                f"total_sq = {bucket}.total_sq + excluded.total_sq",
                [experiment_id, variant, period, n, s1, s2])
    result.accepted += len(inserted)
    count_feedback(rows, inserted)  # modelgate_feedback_rows_total{project}: counted, not audited
    repeated = [t for t in texts if t not in inserted]
    if repeated:
        stored = dict(Outcome.objects.filter(prediction_id__in=repeated)
                      .values_list("prediction_id", "value"))
        for text in repeated:
            index, experiment, _, value = rows[text]
            if stored.get(text) == value:
                result.duplicates += 1
            else:
                result.reject(index, text, "conflicting_outcome",
                              f"this prediction already has the outcome {stored.get(text)!r}; "
                              "the first outcome stands")
    for experiment in {rows[t][1] for t in inserted}:
        if _look_due(experiment):
            look(experiment)


def _look_due(experiment: Experiment) -> bool:
    """A look from the feedback path at most every MODELGATE_AB_LOOK_SECONDS per test (a
    look is a readout: a query and the statistics, too much to repeat for every batch)."""
    interval = settings.MODELGATE_AB_LOOK_SECONDS
    if interval <= 0:
        return True
    key = f"ab-look:{experiment.pk}:{experiment.created_at.timestamp():.6f}"
    try:
        return cache.add(key, 1, timeout=interval)
    except Exception:  # noqa: BLE001 - the cache away: look every time, as before
        return True


# Readouts -----------------------------------------------------------------------------------

def _aggregates(experiment: Experiment) -> dict[str, abtest.Aggregate]:
    found = {t.variant: abtest.Aggregate(t.n, t.total, t.total_sq)
             for t in VariantTotal.objects.filter(experiment=experiment)}
    return {v: found.get(v, abtest.Aggregate()) for v in VARIANTS}


def _tau2(experiment: Experiment, control: abtest.Aggregate,
          treatment: abtest.Aggregate) -> float | None:
    """The mSPRT mixing variance, fixed once both groups reach the minimum sample (it must
    not move with the data afterwards, or the always-valid guarantee is lost)."""
    if experiment.tau2 is not None:
        return experiment.tau2
    if min(control.n, treatment.n) < abtest.MIN_UNITS:
        return None
    variances = abtest.unit_variances(control, treatment,
                                      experiment.kind == OutcomeKind.BINARY)
    tau2 = max(max(variances), 1e-12) / 100
    Experiment.objects.filter(pk=experiment.pk, tau2__isnull=True).update(tau2=tau2)
    experiment.refresh_from_db(fields=["tau2"])
    return experiment.tau2


def variant_names(experiment: Experiment) -> tuple[str, str]:
    deployment = experiment.deployment
    stable = f"v{deployment.stable.number}" if deployment.stable_id else "stable"
    return (f"A ({stable})", f"B (v{deployment.candidate.number})")


def look(experiment: Experiment) -> abtest.Readout:
    """The readout now; a look, so the running minimum of the sequential p-value moves."""
    aggregates = _aggregates(experiment)
    control, treatment = aggregates[rollout.STABLE], aggregates[rollout.CANDIDATE]
    result = abtest.readout(
        control, treatment, binary=experiment.kind == OutcomeKind.BINARY,
        split=experiment.split, previous_sequential_p=experiment.sequential_p,
        tau2=_tau2(experiment, control, treatment), names=variant_names(experiment),
        metric=None if experiment.metric == "conversion" else experiment.metric,
        higher_is_better=experiment.higher_is_better)
    if result.sequential_p is not None and (experiment.sequential_p is None
                                            or result.sequential_p < experiment.sequential_p):
        Experiment.objects.filter(pk=experiment.pk).update(
            sequential_p=Least(Coalesce("sequential_p", 1.0), result.sequential_p))
        experiment.sequential_p = result.sequential_p
    return result


def over_time(experiment: Experiment) -> dict[str, list[dict]]:
    """Per variant, the cumulative outcome at the end of each ten-minute period with
    outcomes, with its 95% interval."""
    binary = experiment.kind == OutcomeKind.BINARY
    series: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    running = {v: abtest.Aggregate() for v in VARIANTS}
    for b in OutcomeBucket.objects.filter(experiment=experiment).order_by("starts_at",
                                                                          "variant"):
        if b.variant not in running:
            continue
        a = running[b.variant]
        a = running[b.variant] = abtest.Aggregate(a.n + b.n, a.total + b.total,
                                                  a.total_sq + b.total_sq)
        if binary:
            low, high = abtest.wilson_interval(a.total, a.n)
        else:
            low, high = abtest.mean_interval(a) or (None, None)
        end = b.starts_at + timedelta(seconds=BUCKET_SECONDS)
        series[b.variant].append({"time": end.isoformat(),
                                  "units": a.n, "value": a.mean, "low": low, "high": high})
    return series


def results(experiment: Experiment) -> dict:
    """What the readout page and API show: the readout (a look), the outcome over time and
    the explanation summaries. Computed at most once per ``MODELGATE_AB_READOUT_SECONDS``
    (2) per test and shared by every viewer and process through the cache: outcomes arrive
    many times a second, and statistics a second or two old read the same. A decision
    forgets it at once."""
    ttl = settings.MODELGATE_AB_READOUT_SECONDS
    key = _results_key(experiment)
    if ttl > 0:
        try:
            found = cache.get(key)
        except Exception:  # noqa: BLE001 - the cache away: compute, as without one
            found = None
        if found is not None:
            return found
    computed = {"readout": look(experiment), "over_time": over_time(experiment),
                "explanations": explanation_summaries(experiment)}
    if ttl > 0:
        try:
            cache.set(key, computed, timeout=ttl)
        except Exception:  # noqa: BLE001
            pass
    return computed


def _results_key(experiment: Experiment) -> str:
    return f"ab-results:{experiment.pk}:{experiment.created_at.timestamp():.6f}"


def _forget_results(experiment: Experiment) -> None:
    try:
        cache.delete(_results_key(experiment))
    except Exception:  # noqa: BLE001 - the cache away: the entry dies with its timeout
        log.warning("could not forget the cached results of A/B test %s", experiment.pk)


def explanation_summaries(experiment: Experiment) -> dict[str, dict | None]:
    """Each variant's plain-language explanation summary, when its explanation is ready."""
    from explainability.shap_values import plain_summary
    from portal.registry.models import Explanation

    deployment = experiment.deployment
    versions = {rollout.STABLE: deployment.stable_id, rollout.CANDIDATE: deployment.candidate_id}
    ready = {e.version_id: e for e in Explanation.objects.select_related("version").filter(
        version_id__in=[v for v in versions.values() if v], status="ready")}
    out = {}
    for variant, version_id in versions.items():
        explanation = ready.get(version_id)
        out[variant] = ({"summary": plain_summary(explanation.as_dict(),
                                                  deployment.model.task,
                                                  explanation.version.class_labels),
                         "top_features": [i["feature"] for i in explanation.importance[:5]]}
                        if explanation else None)
    return out


# Decisions ----------------------------------------------------------------------------------
# Promote B, keep A or extend the test: carried out by the rollout itself, so the action is
# ``portal.releases.experiment_decisions.decide`` (releases import experiments, never the
# reverse); this module checks a decision before it and records it after.

class PendingDecision(NamedTuple):
    """A decision checked (``check_decision``) and not yet carried out."""

    decision: str
    comment: str
    extend_hours: float | None
    readout: dict  # the readout it was made on


def check_decision(user, experiment: Experiment, decision: str, comment: str,
                   extend_hours: float | None = None) -> PendingDecision:
    """Who may decide (approvers), what a decision must say (a comment; hours to extend
    by), and the readout it is made on; raises the refusal."""
    deployment = experiment.deployment
    require_role(user, deployment.environment.project, Role.APPROVER, "decide A/B tests")
    if decision not in DecisionChoice.values:
        raise ValidationFailed(f"decision must be one of {', '.join(DecisionChoice.values)}",
                               field="decision")
    comment = (comment or "").strip()
    if not comment:
        raise ValidationFailed("say why in a comment", field="comment")
    if is_finished(experiment):
        raise Conflict(f"the A/B test has already ended ({status_of(experiment)})",
                       code="test_finished")
    if decision == DecisionChoice.EXTEND:
        if extend_hours is None or not 0 < extend_hours <= 90 * 24:
            raise ValidationFailed("extend by more than 0 and at most 2160 hours",
                                   field="extend_hours")
    else:
        extend_hours = None
    return PendingDecision(decision, comment, extend_hours, look(experiment).to_dict())


def record_decision(user, experiment: Experiment, pending: PendingDecision
                    ) -> ExperimentDecision:
    """Record a decision the rollout carried out, with its comment and readout (audited);
    promote and keep end the test."""
    decision, comment, extend_hours, snapshot = pending
    with transaction.atomic():
        record = ExperimentDecision.objects.create(
            experiment=experiment, decision=decision, comment=comment,
            extend_hours=extend_hours, readout=snapshot, decided_by=user)
        if decision != DecisionChoice.EXTEND:
            Experiment.objects.filter(pk=experiment.pk).update(decision=decision)
            experiment.decision = decision
        transaction.on_commit(lambda: _forget_results(experiment))
        audit.record(user, "experiment.decide", experiment,
                     project_id=experiment.deployment.environment.project_id,
                     changes={"decision": decision, "comment": comment,
                              "extend_hours": extend_hours,
                              "verdict": snapshot.get("verdict")})
    return record
