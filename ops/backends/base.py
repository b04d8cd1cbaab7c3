"""The backend contract: ``apply(plan)``, ``observe(endpoint)``, ``delete(endpoint)``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ops.exceptions import PermanentError, TransientError
from ops.plan import ServingPlan

if TYPE_CHECKING:
    from ops.analysis import Analyzer


class BackendError(PermanentError):
    """The platform refused the plan or the configuration is wrong; retrying cannot help."""

    code = "backend_error"


class BackendUnavailable(TransientError):
    """The platform could not be reached or timed out; the same call may succeed later."""

    code = "backend_unavailable"


class StalePlan(BackendError):
    """The endpoint already records a newer plan (a higher generation); nothing was changed.

    Not a failure to retry or roll back from: someone moved on, and the newer plan stands.
    """

    code = "stale_plan"

    def __init__(self, message: str, generation: int | None = None,
                 recorded: int | None = None):
        super().__init__(message)
        self.generation = generation  # the refused plan's
        self.recorded = recorded  # the endpoint's


class PlanConflict(BackendError):
    """The endpoint records this plan's generation for a plan with other content; nothing
    was changed. One generation names one plan: a different plan needs a new generation."""

    code = "plan_conflict"


def plan_digest(plan: ServingPlan) -> str:
    """A short hash of what ``plan`` asks for: a re-apply of the plan an endpoint records
    has its digest, another plan claiming the same generation does not.

    Fields at their defaults and a variant's ``version_number`` (it follows from
    ``version_id``) are left out, so a plan recorded before a field existed, or before
    plans carried numbers, still hashes like the same plan sent again today."""
    body = _without_defaults(plan, skip=("variants", "generation"))
    body["variants"] = [_without_defaults(v, skip=("version_number",)) for v in plan.variants]
    text = json.dumps(body, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _without_defaults(obj, skip: tuple[str, ...]) -> dict:
    found = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name in skip:
            continue
        if f.default is not dataclasses.MISSING and value == f.default:
            continue
        if f.default_factory is not dataclasses.MISSING and value == f.default_factory():
            continue
        found[f.name] = value
    return found


def check_generation(plan: ServingPlan, recorded: int | None, digest: str | None,
                     where: str) -> None:
    """Fence an apply: ``StalePlan`` when the endpoint records a newer generation than
    ``plan``'s, ``PlanConflict`` when it records this generation with another digest (the
    same digest is a re-apply, which goes on and converges what drifted).

    ``recorded`` None: nothing recorded (a new endpoint, or one from before generations
    were recorded); ``digest`` None: the recorded plan's digest is unknown (recorded before
    digests were), so a plan of that generation is taken for it."""
    if recorded is None or recorded < plan.generation:
        return
    if recorded > plan.generation:
        raise StalePlan(f"plan generation {plan.generation} of {plan.endpoint} is older than "
                        f"generation {recorded}, which {where} already records; not applied "
                        "(the newer plan stands)", plan.generation, recorded)
    if digest is not None and digest != plan_digest(plan):
        raise PlanConflict(f"generation {plan.generation} of {plan.endpoint} was already "
                           f"applied as a different plan ({where} records it); not applied: "
                           "apply this plan with a new generation")


@dataclass(frozen=True)
class ObservedVariant:
    name: str
    version_id: int
    weight: float
    ready: bool
    replicas: int = 1


@dataclass(frozen=True)
class ObservedState:
    """What the platform runs now for an endpoint."""

    endpoint: str
    exists: bool
    generation: int | None = None
    ready: bool = False
    variants: tuple[ObservedVariant, ...] = ()
    url: str | None = None
    detail: str = ""
    extra: dict = field(default_factory=dict)
    # Why the platform refused the latest plan recorded for the endpoint (a model that does
    # not load, say), while it keeps serving the one before; empty when it did not. How an
    # ``apply(plan, wait=False)`` learns later that its plan will never be served.
    refused: str = ""

    def weights(self) -> dict[str, float]:
        return {v.name: v.weight for v in self.variants}


class Backend(ABC):
    """Converges an endpoint to a plan. Implementations keep no state of their own that the
    platform does not hold too, so any process can pick up where another stopped."""

    kind: str = ""
    # What a project's environment may set for this backend (JSON schema; the portal refuses
    # anything else). Machine-level settings (hosts, credentials, images, executables,
    # folders, ports) are the operator's and never appear here.
    PROJECT_SETTINGS: dict = {"type": "object", "properties": {}}

    @abstractmethod
    def apply(self, plan: ServingPlan, *, wait: bool = True) -> ObservedState:
        """Make the endpoint serve ``plan`` (create it if needed) and return what it observes.

        Every apply is fenced by generation, so an older plan never replaces a newer one:
        when the endpoint already records a higher generation, ``StalePlan`` is raised and
        nothing changes; a plan of the generation it records is a re-apply (changes nothing,
        or converges what drifted) when it is that plan, a ``PlanConflict`` when its content
        differs. Two applies racing each other end with the newer plan recorded (the
        backend's docstring says how far its platform allows that).

        ``wait=True`` waits, where the backend waits at all and within its own timeout,
        until the platform serves the plan; it stops as soon as a newer plan has replaced
        this one and returns what it observes then. ``wait=False`` writes or starts what is
        needed and returns at once.

        Raises ``BackendError`` when the platform refuses the plan (what is known wrong at
        once, also with ``wait=False``), ``BackendUnavailable`` when it cannot be reached.
        """

    @abstractmethod
    def observe(self, endpoint: str) -> ObservedState:
        """What the platform runs for ``endpoint`` now (``exists=False`` if nothing)."""

    @abstractmethod
    def delete(self, endpoint: str) -> None:
        """Remove the endpoint and everything created for it; deleting twice is harmless."""

    def smoke(self, endpoint: str, variant: str, rows: list[list[float]], count: int) -> int:
        """Send ``count`` requests of ``rows`` to one variant directly; return how many
        succeeded. Blue/green uses it to give an idle candidate a sample before the switch.

        Backends whose endpoints the portal cannot reach return 0 (the check then stays
        inconclusive and the rollout pauses for a person).
        """
        return 0

    def analyzer(self) -> Analyzer | None:
        """The analyzer that measures this backend's endpoints, or ``None`` for the portal's
        Prometheus (which scrapes the model servers' own ``/metrics``)."""
        return None
