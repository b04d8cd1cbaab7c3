"""Decisions on A/B tests: promote B, keep A, or extend the test, carried out by the rollout.

An A/B test (``portal.experiments``) belongs to an A/B rollout, and deciding it is acting on
that rollout: promote and keep are the deployment's own commands (audited there too); extend
runs the same split longer. So the action lives here, with the rollouts: releases import
experiments, never the reverse. The experiment's side (who may decide, what a decision must
say, the readout it was made on, the record) is ``portal.experiments.services``. The
decision's page form and API action (``/experiments/<pk>/decide/``,
``/api/v1/experiments/<pk>/decide/``) are routed here: ``experiment_views`` and
``api/experiments``.
"""

from __future__ import annotations

from portal.experiments import services as experiments
from portal.experiments.choices import DecisionChoice
from portal.experiments.models import Experiment, ExperimentDecision
from portal.releases import deployments


def decide(user, experiment: Experiment, decision: str, comment: str,
           extend_hours: float | None = None) -> ExperimentDecision:
    """Promote B, keep A or extend the test, with a comment, through the rollout itself."""
    pending = experiments.check_decision(user, experiment, decision, comment, extend_hours)
    deployment = experiment.deployment
    if pending.decision == DecisionChoice.EXTEND:
        deployments.extend(user, deployment, pending.extend_hours * 3600)
    else:
        deployments.command(user, deployment, "promote"
                            if pending.decision == DecisionChoice.PROMOTE else "keep")
    return experiments.record_decision(user, experiment, pending)
