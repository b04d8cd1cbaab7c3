"""What a release asks of its rollout: the variants built from versions (``variant_of``),
the rollout spec built from a request's strategy parameters (``_spec``), and the operator's
limits on it (``rollout_limits``, ``check_strategy_params``)."""

from __future__ import annotations

from django.conf import settings

from ops import rollout
from ops.plan import Variant
from portal.errors import ValidationFailed
from portal.experiments import services as experiments
from portal.registry.models import ModelVersion
from portal.releases.choices import Strategy
from portal.releases.models import Environment


def endpoint_name(environment: Environment, model) -> str:
    return model.name


def variant_of(version: ModelVersion, name: str) -> Variant:
    profile = version.dataset.profile if version.dataset_id else {}
    baseline = {"features": {k: {"edges": v.get("edges", [])}
                             for k, v in (profile or {}).get("features", {}).items()
                             if v.get("kind") == "numeric"}}
    # Model servers load the skops file (a pickle's conversion), never a pickle.
    return Variant(name=name, version_id=version.pk, version_number=version.number,
                   artifact_uri=version.loadable_uri, sha256=version.loadable_sha256, weight=1.0,
                   input_schema=version.input_schema, baseline=baseline,
                   task=version.model.task,
                   trusted_types=tuple(settings.MODELGATE_SKOPS_TRUSTED_TYPES))


def _spec(deployment_strategy: str, params: dict, endpoint: str, candidate: ModelVersion,
          stable: ModelVersion | None) -> rollout.RolloutSpec:
    data = {"strategy": deployment_strategy, "endpoint": endpoint,
            "candidate": variant_of(candidate, rollout.CANDIDATE),
            "stable": variant_of(stable, rollout.STABLE) if stable else None}
    for key in ("split", "duration_seconds", "sample_size", "check_seconds", "warm_seconds",
                "failure_limit", "check_interval_seconds", "max_inconclusive_checks",
                "max_inconclusive_seconds"):
        if key in params:
            data[key] = params[key]
    try:
        if "steps" in params:
            data["steps"] = tuple(rollout.CanaryStep(**s) if isinstance(s, dict)
                                  else rollout.CanaryStep(*s) for s in params["steps"])
        if "thresholds" in params:
            data["thresholds"] = rollout.Thresholds(**params["thresholds"])
        return rollout.RolloutSpec(**data)
    except (rollout.RolloutError, TypeError, ValueError) as e:
        raise ValidationFailed(f"strategy parameters: {e}", field="strategy_params") from e


def rollout_limits() -> rollout.RolloutLimits:
    return rollout.RolloutLimits(
        min_check_interval_seconds=settings.MODELGATE_ROLLOUT_MIN_CHECK_SECONDS,
        max_steps=settings.MODELGATE_ROLLOUT_MAX_STEPS,
        min_bake_seconds=settings.MODELGATE_ROLLOUT_MIN_BAKE_SECONDS)


def check_strategy_params(strategy: str, params: dict, version: ModelVersion,
                          environment: Environment) -> None:
    """Refuse, when the request is made, parameters the rollout would refuse when it starts
    (the version stands in for a stable that may not exist yet), and parameters past the
    operator's bounds on how often and how much a rollout works (``rollout_limits``)."""
    spec = _spec(strategy, params, endpoint_name(environment, version.model), version, version)
    problem = rollout.limits_problem(spec, rollout_limits())
    if problem:
        raise ValidationFailed(f"strategy parameters: {problem}", field="strategy_params")
    if strategy == Strategy.AB:
        experiments.outcome_settings(params, version.model.task)
