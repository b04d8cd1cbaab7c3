"""Where a rollout stands (``RolloutState``, stored as JSON) and what each decision says to
do (``Decision``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum

from ops.plan import ServingPlan
from ops.rollout.evaluation import Measurement, Verdict
from ops.rollout.spec import RolloutError


class Status(StrEnum):
    PENDING = "pending"
    PROGRESSING = "progressing"
    PAUSED = "paused"
    AWAITING_DECISION = "awaiting_decision"
    # The final plan (the candidate alone) is applied; succeeded once the backend reports it
    # served and ready, so "succeeded" never precedes what callers get.
    PROMOTING = "promoting"
    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled_back"
    KEPT_STABLE = "kept_stable"
    FAILED = "failed"


ENDED = frozenset({Status.SUCCEEDED, Status.ROLLED_BACK, Status.KEPT_STABLE, Status.FAILED})


class Event(StrEnum):
    """The stable word recorded in the deployment's event log for each decision."""

    STARTED = "started"
    BAKING = "baking"
    ADVANCED = "advanced"
    INCONCLUSIVE = "inconclusive"
    ANALYSIS_FAILED = "analysis_failed"  # a failure within the failure limit
    PAUSED = "paused"
    RESUMED = "resumed"
    WATCHING = "watching"  # paused or awaiting a decision: still watching for failures
    AWAITING_DECISION = "awaiting_decision"
    EXTENDED = "extended"
    PROMOTING = "promoting"  # the final plan applied, its serving awaited
    SUCCEEDED = "succeeded"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    KEPT_STABLE = "kept_stable"
    FAILED = "failed"


@dataclass(frozen=True)
class RolloutState:
    """Where a rollout stands; lives in a database row as JSON (``to_dict``/``from_dict``).

    ``step_id`` increases by one with every decision and command, so the orchestrator claims
    a step with ``UPDATE ... WHERE step_id = <the step_id it decided from>``.
    ``generation`` is that of the last plan emitted, ``base_generation`` that of the plan the
    endpoint served before this rollout (a state whose two generations are equal has emitted
    nothing). ``reason`` explains the latest change of status or plan.
    """

    status: Status = Status.PENDING
    step: int = 0
    step_id: int = 0
    generation: int = 0
    base_generation: int = 0
    step_started_at: float | None = None
    failures: int = 0
    inconclusive: int = 0
    inconclusive_since: float | None = None
    reason: str = ""

    @classmethod
    def initial(cls, generation: int = 0) -> RolloutState:
        """A pending rollout of an endpoint currently serving plan ``generation`` (0: none)."""
        return cls(generation=generation, base_generation=generation)

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def to_dict(self) -> dict:
        return {**asdict(self), "status": str(self.status)}

    @classmethod
    def from_dict(cls, data: dict) -> RolloutState:
        try:
            return cls(**{**data, "status": Status(data["status"])})
        except (KeyError, TypeError, ValueError) as e:
            raise RolloutError(f"malformed rollout state: {e}", code="invalid_state") from e


@dataclass(frozen=True)
class Served:
    """What the backend reports for the endpoint: the plan generation it serves, whether it
    is ready, and what it says (``ObservedState.detail``)."""

    generation: int | None
    ready: bool
    detail: str = ""


@dataclass(frozen=True)
class Decision:
    """What to do now: persist ``state``, apply ``plan`` if any, decide again after
    ``wait_seconds`` (None once the rollout has ended)."""

    state: RolloutState
    plan: ServingPlan | None
    wait_seconds: float | None
    event: Event
    reason: str
    verdict: Verdict | None = None  # of the analysis judged, None when none was
    measurements: tuple[Measurement, ...] = ()

    def to_dict(self) -> dict:
        return {"state": self.state.to_dict(), "wait_seconds": self.wait_seconds,
                "plan": asdict(self.plan) if self.plan else None, "event": str(self.event),
                "reason": self.reason, "verdict": str(self.verdict) if self.verdict else None,
                "measurements": [m.to_dict() for m in self.measurements]}
