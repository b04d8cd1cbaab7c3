"""How the portal writes numbers and moments for people (portal/web/templatetags)."""

import datetime

import pytest

from portal.web.templatetags.modelgate import metric, ms, num, when


@pytest.mark.parametrize("value, shown", [
    (0.011213636363636321, "0.0112"), (1268.23, "1,270"), (1.6958427650512713, "1.7"),
    (2.0, "2"), (0, "0"), (-0.5, "-0.5"), (0.987654, "0.988"), (123456, "123,456"),
    (None, "—"), ("n/a", "n/a"), (True, "yes"), (float("nan"), "—"),
])
def test_numbers_have_three_significant_figures(value, shown):
    assert num(value) == shown


def test_metrics_and_durations_are_rounded_for_people():
    assert metric(0.93456789) == "0.935"
    assert metric("auc") == "auc"
    assert ms(0.011213636363636321) == "11.2 ms"
    assert ms(2.5) == "2.5 s"
    assert ms(None) == "—"


def test_a_moment_reads_in_words_with_the_exact_time_on_hover():
    moment = datetime.datetime(2026, 12, 5, 13, 20, 24, tzinfo=datetime.UTC)
    html = str(when(moment))
    assert 'datetime="2026-12-05T13:20:24+00:00"' in html
    assert 'title="2026-12-05 13:20:24 UTC"' in html
    assert "ago" in html
    assert when(None) == "—"


def test_no_invented_digits_no_machine_words_and_units_after_rounding():
    from ops.numbers import distinct, percent

    assert num(2**53 + 1) == f"{2**53 + 1:,}"  # counts are exact
    assert num(1.5e30) == "1.5e+30"  # not thirty invented digits
    assert num(float("nan")) == num(float("inf")) == "—"
    assert ms(0.9996) == "1 s" and ms(float("nan")) == "—"
    assert percent(1e-6) == "<0.01%"
    # Two values in one sentence get the digits that tell them apart.
    assert distinct(1.5004, 1.5) == ("1.5004", "1.5")
    assert distinct(99.96, 100) == ("99.96", "100")
    assert distinct(0.3, 0.3) == ("0.3", "0.3")


def test_a_verdict_never_reads_as_equal_figures():
    from ops.rollout.evaluation import _judge

    assert _judge("error_rate", 0.010004, 0.01, True).detail == "0.010004 > 0.01"
