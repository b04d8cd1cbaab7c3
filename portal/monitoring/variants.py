"""Which variants serve each endpoint now, by name, as the portal's rollouts say.

The latest rollout of each (environment, model) decides, as in ``endpoints.served_endpoints``,
but only the variants' names are read (no versions, no addresses, no backend): the alert
pages call this on every request and the alert sync on every poll. An endpoint whose latest
rollout has emitted no plan yet (just requested) is left out, as is one the portal never
deployed: what serves them is not known, so nothing is concluded about their alerts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ops import rollout
from portal.releases.models import Deployment


@dataclass(frozen=True)
class Serving:
    """The variants serving one endpoint and the rollout that put them there."""

    variants: frozenset[str]
    deployment_id: int
    status: str

    def lacks(self, variant: str) -> str:
        """Why ``variant`` does not serve here, or "" when it does."""
        if not variant or variant in self.variants:
            return ""
        serving = ", ".join(sorted(self.variants)) or "nothing"
        return (f"the variant {variant} no longer serves this endpoint (rollout "
                f"{self.deployment_id} is {self.status.replace('_', ' ')}; serving: {serving})")


def serving_variants(environment_ids: Iterable[int] | None = None
                     ) -> dict[tuple[int, str], Serving]:
    """``{(environment id, endpoint): Serving}`` for every endpoint a rollout serves now."""
    deployments = (Deployment.objects.only("id", "environment_id", "model_id", "endpoint",
                                           "spec", "state", "status", "created_at")
                   .order_by("environment_id", "model_id", "-created_at", "-pk"))
    if environment_ids is not None:
        deployments = deployments.filter(environment_id__in=set(environment_ids))
    latest: dict[tuple[int, int], Deployment] = {}
    for deployment in deployments:
        latest.setdefault((deployment.environment_id, deployment.model_id), deployment)
    found = {}
    for deployment in latest.values():
        try:
            plan = rollout.current_plan(rollout.RolloutSpec.from_dict(deployment.spec),
                                        rollout.RolloutState.from_dict(deployment.state))
        except (KeyError, TypeError, ValueError):
            continue
        if plan is None:
            continue
        found[(deployment.environment_id, deployment.endpoint)] = Serving(
            frozenset(v.name for v in plan.variants), deployment.pk, str(deployment.status))
    return found
