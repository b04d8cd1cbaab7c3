"""What a rollout says to people: the status line follows the plan applied, and the
analysis' numbers are rounded to three significant figures."""

from ops.numbers import figure, seconds
from ops.rollout import Analysis, Status, decide
from tests.unit.test_rollout import HEALTHY, make_spec, start


def test_the_reason_follows_each_new_plan_not_only_a_change_of_status():
    spec = make_spec()
    state = start(spec).state
    assert "step 1 of" in state.reason
    advanced = decide(spec, state, HEALTHY, state.step_started_at + 10_000).state
    assert advanced.status == Status.PROGRESSING and advanced.step == 1
    assert "now step 2 of" in advanced.reason


def test_analysis_details_are_rounded_for_people():
    spec = make_spec()
    state = start(spec).state
    analysis = Analysis(requests=1268.23, error_rate=0.0011213636363636321, p99_latency=0.011213,
                        stable_p99_latency=0.0101)
    details = {m.metric: m.detail for m in decide(spec, state, analysis, state.step_started_at
                                                   + 5).measurements}
    assert details["requests"].startswith("1,270 >= ")
    assert "0.00112 <= " in details["error_rate"]
    assert "11.2 ms" in details["p99_latency_ratio"]
    assert "0.0112136" not in " ".join(details.values())


def test_figure_and_seconds_follow_the_template_filters():
    assert figure(1268.23) == "1,270" and figure(0.011213636363636321) == "0.0112"
    assert figure(2.0) == "2" and figure(0) == "0" and figure(-4.8e-18) == "-4.8e-18"
    assert seconds(0.011213636363636321) == "11.2 ms" and seconds(1.5) == "1.5 s"


def test_the_status_line_of_a_row_written_before_reasons_followed_plans():
    from types import SimpleNamespace

    from portal.releases.rollout_page import status_text

    spec = make_spec()
    state = start(spec).state
    advanced = decide(spec, state, HEALTHY, state.step_started_at + 10_000).state
    stale = {**advanced.to_dict(), "reason": state.reason}  # still "step 1 of 4"
    row = SimpleNamespace(spec=spec.to_dict(), state=stale)
    assert status_text(row).startswith("at step 2 of")
    paused = {**stale, "status": "paused", "reason": "paused by alice"}
    assert status_text(SimpleNamespace(spec=spec.to_dict(), state=paused)) == \
        f"paused by alice (at {advanced.reason.split('now ')[1]})"
