"""What a release that succeeds moves: the environment's ``release_alias`` (decision 53).

"Champion" is what the gates compare with and what people read as "the model"; a release
to production that succeeded never moved it, so the two drifted apart. An environment now
names the alias its successful releases move (production: ``champion`` by default), and the
orchestrator moves it in the transaction that records the success.
"""

from __future__ import annotations

from ops import rollout
from portal.errors import Conflict
from portal.registry import services as registry
from portal.releases.models import Deployment, DeploymentEvent

# The alias an environment of this name moves unless its owner names another (or none).
DEFAULT_RELEASE_ALIASES = {"production": "champion"}


def default_release_alias(environment_name: str) -> str:
    return DEFAULT_RELEASE_ALIASES.get(environment_name, "")


def on_decision(deployment: Deployment, old: rollout.RolloutState,
                decision: rollout.Decision) -> None:
    """Move the environment's release alias to the candidate if ``decision`` made the
    rollout succeed; call it in the transaction that claimed the decision, so the alias
    moves if and only if the success is recorded."""
    name = deployment.environment.release_alias
    if not name or decision.state.status != rollout.Status.SUCCEEDED \
            or old.status == rollout.Status.SUCCEEDED:
        return
    candidate = deployment.candidate
    try:
        alias = registry.move_alias_for_release(deployment.model, name, candidate,
                                                via=f"deployment {deployment.pk}")
    except Conflict as e:  # e.g. the version was archived while it rolled out
        reason = f"the {name} alias was not moved: {e.detail}"
    else:
        reason = f"the {name} alias points at v{alias.version.number}"
    DeploymentEvent.objects.create(deployment=deployment, event="release_alias",
                                   status=str(decision.state.status), reason=reason)
