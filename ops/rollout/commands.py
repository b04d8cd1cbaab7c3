"""What people do to a rollout (pause, resume, promote, rollback, keep, extend), and what
happens when a backend refuses a plan (``apply_failed``)."""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum

from ops.rollout.engine import _decision, _finish, _promote
from ops.rollout.plans import _label
from ops.rollout.spec import MAX_SECONDS, RolloutError, RolloutSpec, Strategy
from ops.rollout.state import Decision, Event, RolloutState, Status


class Command(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    KEEP = "keep"  # ab/shadow (running or awaiting a decision): end with the stable only


_ALLOWED = {
    Command.PAUSE: {Status.PROGRESSING},
    Command.RESUME: {Status.PAUSED},
    Command.PROMOTE: {Status.PENDING, Status.PROGRESSING, Status.PAUSED,
                      Status.AWAITING_DECISION},
    Command.ROLLBACK: {Status.PENDING, Status.PROGRESSING, Status.PAUSED,
                       Status.AWAITING_DECISION, Status.PROMOTING},
    Command.KEEP: {Status.PROGRESSING, Status.PAUSED, Status.AWAITING_DECISION},
}
_COMPARING = (Strategy.AB, Strategy.SHADOW)  # strategies that end on a person's decision


def command(spec: RolloutSpec, state: RolloutState, name: str | Command, now: float,
            actor: str = "") -> Decision:
    """Carry out a person's command, or raise ``RolloutError`` if the state forbids it.

    Promote applies the candidate alone at once (even skipping bluegreen's warm period) and
    succeeds once that plan is served;
    rollback ends with the stable alone; keep (ab/shadow, running or awaiting a decision:
    the comparison is settled in the stable's favour) ends with the stable alone as
    ``kept_stable``. Pause holds the current split; resume continues the
    same step, its bake clock still counting from when the step began.
    """
    try:
        cmd = Command(name)
    except ValueError as e:
        raise RolloutError(f"unknown command {name!r}; valid: {', '.join(Command)}",
                           code="unknown_command") from e
    if state.status not in _ALLOWED[cmd] or (cmd == Command.KEEP
                                              and spec.strategy not in _COMPARING):
        raise RolloutError(_refusal(cmd, state))
    if cmd == Command.ROLLBACK and state.status == Status.PROMOTING and not spec.stable:
        raise RolloutError("cannot roll back: this is the first release here, there is no "
                           "stable version to go back to")
    by = f" by {actor}" if actor else " by a person"
    if cmd == Command.PAUSE:
        return _decision(spec, state, replace(state, status=Status.PAUSED), Event.PAUSED,
                         f"paused{by} at {_label(spec, state)}",
                         wait=spec.check_interval_seconds)
    if cmd == Command.RESUME:
        new = replace(state, status=Status.PROGRESSING, inconclusive=0, inconclusive_since=None)
        return _decision(spec, state, new, Event.RESUMED,
                         f"resumed{by} at {_label(spec, state)}", wait=0.0)
    if cmd == Command.PROMOTE:
        return _promote(spec, state, now, Event.PROMOTED,
                        f"promoted{by}: the candidate takes all traffic, stable removed; "
                        "succeeds once served")
    if cmd == Command.KEEP:
        return _finish(spec, state, Status.KEPT_STABLE, Event.KEPT_STABLE,
                       f"stable kept{by}: candidate removed")
    return _finish(spec, state, Status.ROLLED_BACK, Event.ROLLED_BACK,
                   f"rolled back{by} at {_label(spec, state)}: stable serves all traffic")


def _refusal(cmd: Command, state: RolloutState) -> str:
    if state.ended:
        return f"cannot {cmd}: the rollout has already ended ({state.status})"
    if cmd == Command.RESUME:
        return f"cannot resume: the rollout is {state.status}, not paused"
    if cmd == Command.PAUSE:
        return f"cannot pause: the rollout is {state.status}; only a progressing one pauses"
    return (f"cannot {cmd}: the rollout is {state.status}; keep is for a running A/B or "
            "shadow rollout")


def extend(spec: RolloutSpec, state: RolloutState, seconds: float, now: float,
           actor: str = "") -> tuple[RolloutSpec, Decision]:
    """Run an A/B or shadow comparison ``seconds`` longer than from now: the new spec (its
    duration counted from the stage's start, no sample-size end) and the decision.

    The split stays as it is, with the same plan generation, so every prediction of the
    comparison still belongs to it; a comparison awaiting a decision goes back to running.
    """
    if spec.strategy not in _COMPARING:
        raise RolloutError(f"cannot extend a {spec.strategy} rollout; only A/B and shadow "
                           "comparisons run for a set time")
    if state.status not in (Status.PROGRESSING, Status.PAUSED, Status.AWAITING_DECISION):
        raise RolloutError(f"cannot extend: the rollout is {state.status}")
    if not 0 < seconds <= MAX_SECONDS:
        raise RolloutError("extend by more than 0 seconds and at most 90 days",
                           code="invalid_command")
    started = state.step_started_at if state.step_started_at is not None else now
    new_spec = replace(spec, duration_seconds=round(now - started + seconds, 3),
                       sample_size=None)
    status = Status.PAUSED if state.status == Status.PAUSED else Status.PROGRESSING
    by = f" by {actor}" if actor else " by a person"
    new = replace(state, status=status, inconclusive=0, inconclusive_since=None)
    hours = seconds / 3600
    return new_spec, _decision(new_spec, state, new, Event.EXTENDED,
                               f"extended{by}: {_label(new_spec, state)} runs {hours:g} h "
                               "more", wait=min(seconds, spec.check_interval_seconds))


def apply_failed(spec: RolloutSpec, state: RolloutState, detail: str) -> Decision:
    """The backend refused the plan of ``state`` for good; decide how to recover.

    The first plan refused: the rollout could not start (``failed``), and the stable-only
    plan restores whatever the backend half-applied. A later plan refused: roll back. The
    stable-only plan itself refused: ``failed`` with no plan, a person must look.
    """
    if state.generation == state.base_generation or state.status == Status.FAILED:
        raise RolloutError(f"no plan of this rollout awaits applying ({state.status})")
    first = state.generation == state.base_generation + 1
    refused = f"the backend refused plan generation {state.generation}: {detail}"
    if state.status in (Status.ROLLED_BACK, Status.KEPT_STABLE) or (first and not spec.stable):
        return _decision(spec, state, replace(state, status=Status.FAILED), Event.FAILED,
                         f"{refused}; the endpoint's state is unknown, check the backend")
    if first:
        new = replace(state, status=Status.FAILED, generation=state.generation + 1)
        return _decision(spec, state, new, Event.FAILED,
                         f"could not start, {refused}; restoring the stable")
    return _finish(spec, state, Status.ROLLED_BACK, Event.ROLLED_BACK,
                   f"rolled back, {refused}")


def superseded(spec: RolloutSpec, state: RolloutState, detail: str) -> Decision:
    """The backend refused this rollout's plan as older than what the endpoint records
    (``StalePlan``): someone moved the endpoint on. The rollout stops, ``failed``, and
    applies nothing: any plan of its own would replace the newer one."""
    if state.ended:
        raise RolloutError(f"the rollout has already ended ({state.status})",
                           code="rollout_ended")
    return _decision(spec, state, replace(state, status=Status.FAILED), Event.FAILED,
                     f"stopped: a newer plan serves the endpoint ({detail}); this rollout "
                     "applies nothing more")
