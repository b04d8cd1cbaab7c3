"""Which variants serve each endpoint now, by name, as the portal's rollouts say.

The latest rollout of each (environment, model) decides, as in ``endpoints.served_endpoints``,
but only the variants' names are read (no versions, no addresses, no backend): the alert
pages call this on every request and the alert sync on every poll. An endpoint whose latest
rollout has emitted no plan yet (just requested) is left out, as is one the portal never
deployed: what serves them is not known, so nothing is concluded about their alerts.

The plan is the portal's decision, not what the backend does: a rollback decided while the
backend was away, or refused by it, leaves the status "rolled back" while the candidate
still takes traffic. So a variant missing from the plan is said to serve no more only once
the plan is known to be in place (``Serving.settled``, see ``_settled``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Max, Q

from ops import rollout
from portal.releases.deployments import ACTIVE, APPLY_DELAYED
from portal.releases.models import Deployment, DeploymentEvent

# The events that say a rollout's latest plan is not (or no longer known to be) in place:
# its apply is waiting for the backend (``deployments._delayed``), the backend refused it
# for good (``_refused``: "the stable-only plan could not be applied either"), or a newer
# plan from elsewhere holds the endpoint (``_mark_superseded``).
NOT_APPLIED = (APPLY_DELAYED, "apply_failed", "superseded")


@dataclass(frozen=True)
class Serving:
    """The variants serving one endpoint and the rollout that put them there."""

    variants: frozenset[str]
    deployment_id: int
    status: str
    settled: bool = True  # the plan is known to be in place (``_settled``)

    def lacks(self, variant: str) -> str:
        """Why ``variant`` does not serve here, or "" when it does, or may still: a variant
        removed by a plan not known to be in place yet is not concluded to be gone."""
        if not variant or variant in self.variants or not self.settled:
            return ""
        serving = ", ".join(sorted(self.variants)) or "nothing"
        return (f"the variant {variant} no longer serves this endpoint (rollout "
                f"{self.deployment_id} is {self.status.replace('_', ' ')}; serving: {serving})")


def serving_variants(environment_ids: Iterable[int] | None = None
                     ) -> dict[tuple[int, str], Serving]:
    """``{(environment id, endpoint): Serving}`` for every endpoint a rollout serves now.

    Two queries whatever the history: the latest rollout of each (environment, model), by
    highest id as in ``releases.serving._latest``, and the few events of the ended ones
    that ``_settled`` reads.
    """
    scope = Deployment.objects.all()
    if environment_ids is not None:
        scope = scope.filter(environment_id__in=set(environment_ids))
    latest_ids = scope.order_by().values("environment_id", "model_id").annotate(
        last=Max("pk")).values("last")
    latest = list(Deployment.objects.filter(pk__in=latest_ids).order_by()
                  .only("id", "environment_id", "endpoint", "spec", "state", "status",
                        "next_check_at"))
    planned = {}
    for deployment in latest:
        try:
            state = rollout.RolloutState.from_dict(deployment.state)
            plan = rollout.current_plan(rollout.RolloutSpec.from_dict(deployment.spec), state)
        except (rollout.RolloutError, KeyError, TypeError, ValueError, IndexError):
            continue  # a state this code cannot read: nothing is concluded about it
        if plan is not None:
            planned[deployment.pk] = (deployment, state, plan)
    events = _events_of([pk for pk, (deployment, _, _) in planned.items()
                         if deployment.status not in ACTIVE])
    return {(deployment.environment_id, deployment.endpoint): Serving(
        frozenset(v.name for v in plan.variants), deployment.pk, str(deployment.status),
        _settled(deployment, state, events.get(deployment.pk, [])))
        for deployment, state, plan in planned.values()}


def _events_of(deployment_ids: list[int]) -> dict[int, list[tuple]]:
    """``{deployment id: [(event, status, generation), ...]}`` oldest first: the events of
    the deployments that ``_settled`` reads (plans emitted or applied, delays, refusals,
    failures, success), not their bake ticks."""
    if not deployment_ids:
        return {}
    rows = (DeploymentEvent.objects.filter(deployment_id__in=deployment_ids)
            .filter(Q(generation__isnull=False) | Q(event__in=NOT_APPLIED)
                    | Q(status__in=[rollout.Status.FAILED, rollout.Status.SUCCEEDED]))
            .order_by("pk").values_list("deployment_id", "event", "status", "generation"))
    found = defaultdict(list)
    for deployment_id, *event in rows:
        found[deployment_id].append(tuple(event))
    return found


def _settled(deployment: Deployment, state: rollout.RolloutState, events: list[tuple]) -> bool:
    """Whether the rollout's current plan is known to be in place on the endpoint.

    Neither the state nor the deployment records the generation the backend serves (the
    engine's ``Served`` is read at each advance, not kept), so the rollout's log decides,
    as ``portal/releases/deployments.py`` writes it:

    - A rollout under way is never settled. Its plans keep both variants until it promotes,
      and a promoting plan (the candidate alone) is applied but the stable serves until the
      backend serves the new plan, when the rollout succeeds (``_await_serving``).
    - An ended one: the event that emitted its plan (or, after a delay, the ``applied``
      event) carries the state's generation. The apply follows it, and says so only when
      it did not work: ``apply_delayed`` (and ``next_check_at`` set for the retry),
      ``apply_failed``, ``superseded``, or a fall to ``failed`` with no new plan (the plan
      refused: "the endpoint's state is unknown"; or stopped by a newer plan). Any of them
      after it, or no such event at all, and it is not settled — unless a ``succeeded``
      follows: the engine saw the promoting plan served (a delay while promoting is
      converged by the next advance, which writes no ``applied`` event).

    Between the decision's commit and its apply (well under a poll apart, longer only while
    a backend times out) the plan reads as settled; if that apply is then delayed, the next
    poll sees it, and the variant's next firing report reopens its alerts, announced.
    """
    if deployment.status in ACTIVE or deployment.next_check_at is not None:
        return False
    emitted = next((i for i in range(len(events) - 1, -1, -1)
                    if events[i][2] == state.generation), None)
    if emitted is None:
        return False
    plan_status = events[emitted][1]
    applied = True
    for event, status, _ in events[emitted + 1:]:
        if event in NOT_APPLIED:
            applied = False
        elif status == rollout.Status.FAILED and plan_status != rollout.Status.FAILED:
            applied = False
        elif status == rollout.Status.SUCCEEDED and plan_status != rollout.Status.SUCCEEDED:
            applied = True
    return applied
