"""A/B readouts from per-variant aggregates: what a stakeholder reads, and how sure it is.

No Django. A variant's outcomes are kept as three running numbers — ``n``, ``total`` and
``total_sq`` (sum and sum of squares; for a binary outcome ``total`` counts successes) — so
a readout costs O(1) whatever the traffic. ``readout(control, treatment, ...)`` gives:

- per variant: units, rate or mean, and a 95% interval (Wilson's for rates, Student's t
  for means);
- the candidate's lift over the control (absolute and relative) with its 95% interval;
- a fixed-horizon test: two-proportion z-test (binary) or Welch's t-test (numeric);
- an **always-valid** sequential test (mSPRT with a normal mixing prior, Johari et al.
  2017): its p-value may be looked at after every new unit without inflating false
  positives — the caller keeps the running minimum (``sequential_p``);
- a sample-ratio-mismatch check: a chi-square test of the units against the configured
  split; p below 0.001 means assignment is broken and no verdict is given;
- the minimum detectable effect at the current sample size (80% power, 5% two-sided);
- a verdict in plain words, naming the test it comes from.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from scipy import stats

ALPHA = 0.05
SRM_ALPHA = 0.001
MIN_UNITS = 30  # per variant, before any verdict


@dataclass(frozen=True)
class Aggregate:
    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    def add(self, value: float) -> Aggregate:
        return Aggregate(self.n + 1, self.total + value, self.total_sq + value * value)

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    @property
    def variance(self) -> float | None:
        """Sample variance (n - 1)."""
        if self.n < 2:
            return None
        return max((self.total_sq - self.total * self.total / self.n) / (self.n - 1), 0.0)


def wilson_interval(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_interval(a: Aggregate, confidence: float = 0.95) -> tuple[float, float] | None:
    if a.n < 2:
        return None
    half = stats.t.ppf(0.5 + confidence / 2, a.n - 1) * math.sqrt(a.variance / a.n)
    return (a.mean - half, a.mean + half)


def two_proportion_ztest(s1: float, n1: int, s2: float, n2: int) -> tuple[float, float]:
    """(z, two-sided p) for p2 - p1 with the pooled standard error."""
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return (0.0, 1.0)
    z = (s2 / n2 - s1 / n1) / se
    return (z, float(2 * stats.norm.sf(abs(z))))


def welch_ttest(a: Aggregate, b: Aggregate) -> tuple[float, float, float]:
    """(t, degrees of freedom, two-sided p) for mean(b) - mean(a)."""
    va, vb = a.variance / a.n, b.variance / b.n
    if va + vb == 0:
        return (0.0, float(a.n + b.n - 2), 1.0)
    t = (b.mean - a.mean) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va * va / (a.n - 1) + vb * vb / (b.n - 1))
    return (t, df, float(2 * stats.t.sf(abs(t), df)))


def srm_pvalue(n_control: int, n_treatment: int, treatment_share: float) -> float:
    total = n_control + n_treatment
    if total == 0:
        return 1.0
    expected = [total * (1 - treatment_share), total * treatment_share]
    return float(stats.chisquare([n_control, n_treatment], expected).pvalue)


def msprt_pvalue(difference: float, variance: float, tau2: float) -> float:
    """1 / Λ of the mixture SPRT for a difference with estimated ``variance`` (of the
    difference) and mixing variance ``tau2``; the always-valid p-value is the running
    minimum of this over the looks (capped at 1)."""
    if variance <= 0:
        return 1.0
    log_lambda = 0.5 * math.log(variance / (variance + tau2)) + \
        (tau2 * difference * difference) / (2 * variance * (variance + tau2))
    return float(min(1.0, math.exp(-log_lambda)))


def minimum_detectable_effect(sd_control: float, sd_treatment: float, n_control: int,
                              n_treatment: int, alpha: float = ALPHA,
                              power: float = 0.8) -> float | None:
    if n_control < 2 or n_treatment < 2:
        return None
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(z * math.sqrt(sd_control ** 2 / n_control + sd_treatment ** 2 / n_treatment))


@dataclass
class Readout:
    kind: str  # binary | numeric
    control: dict
    treatment: dict
    difference: float | None
    difference_interval: tuple[float, float] | None
    relative_lift: float | None
    relative_interval: tuple[float, float] | None
    p_value: float | None
    test: str
    sequential_p: float | None
    srm_p: float
    srm_broken: bool
    mde: float | None
    units_needed: int | None
    significant: bool
    verdict: str

    def to_dict(self) -> dict:
        return asdict(self)


def unit_variances(control: Aggregate, treatment: Aggregate,
                   binary: bool) -> tuple[float, float]:
    """Per-unit outcome variance of each group; for rates with one success and one failure
    added (Agresti–Caffo), so that 0 % or 100 % does not read as certainty."""
    if binary:
        pa = (control.total + 1) / (control.n + 2)
        pb = (treatment.total + 1) / (treatment.n + 2)
        return pa * (1 - pa), pb * (1 - pb)
    return control.variance or 0.0, treatment.variance or 0.0


def p_text(p: float) -> str:
    """A p-value as people read it: "p < 0.001" rather than "p = 1.79e-05"."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def _side(a: Aggregate, binary: bool) -> dict:
    if binary:
        low, high = wilson_interval(a.total, a.n)
        return {"units": a.n, "rate": a.mean, "interval": (low, high)}
    return {"units": a.n, "mean": a.mean, "interval": mean_interval(a)}


def readout(control: Aggregate, treatment: Aggregate, *, binary: bool, split: float = 0.5,
            previous_sequential_p: float | None = None, tau2: float | None = None,
            names: tuple[str, str] = ("A", "B"), metric: str | None = None,
            higher_is_better: bool = True) -> Readout:
    """Everything a stakeholder reads about the test so far.

    ``tau2`` (the mSPRT mixing variance) should be fixed for the life of a test; by default
    it is a hundredth of the larger variance seen now. ``metric`` names the outcome in the
    verdict; ``higher_is_better`` says which direction is an improvement.
    """
    kind = "binary" if binary else "numeric"
    srm = srm_pvalue(control.n, treatment.n, split)
    broken = srm < SRM_ALPHA
    base = Readout(kind=kind, control=_side(control, binary), treatment=_side(treatment, binary),
                   difference=None, difference_interval=None, relative_lift=None,
                   relative_interval=None, p_value=None,
                   test="two-proportion z-test" if binary else "Welch's t-test",
                   sequential_p=previous_sequential_p, srm_p=srm, srm_broken=broken, mde=None,
                   units_needed=None, significant=False, verdict="")
    if control.n < MIN_UNITS or treatment.n < MIN_UNITS:
        have = min(control.n, treatment.n)
        base.verdict = (f"Not enough data yet: {have} outcomes in the smaller group, at least "
                        f"{MIN_UNITS} per group before anything is said.")
        base.units_needed = MIN_UNITS - have
        return base
    a_mean, b_mean = control.mean, treatment.mean
    var_a, var_b = unit_variances(control, treatment, binary)
    if binary:
        _, p = two_proportion_ztest(control.total, control.n, treatment.total, treatment.n)
        # Agresti–Caffo: one success and one failure added to each group, so a rate of 0 %
        # or 100 % still has an honest width (and the interval covers better when small).
        n_a, n_b = control.n + 2, treatment.n + 2
        centre = (treatment.total + 1) / n_b - (control.total + 1) / n_a
    else:
        _, _, p = welch_ttest(control, treatment)
        n_a, n_b = control.n, treatment.n
        centre = b_mean - a_mean
    difference = b_mean - a_mean
    se = math.sqrt(var_a / n_a + var_b / n_b)
    z = stats.norm.ppf(1 - ALPHA / 2)
    interval = (centre - z * se, centre + z * se)
    relative = relative_interval = None
    if a_mean:
        relative = difference / a_mean
        relative_interval = (interval[0] / a_mean, interval[1] / a_mean)
    tau2 = tau2 if tau2 is not None else max(var_a, var_b, 1e-12) / 100
    sequential = msprt_pvalue(difference, se * se, tau2)
    if previous_sequential_p is not None:
        sequential = min(sequential, previous_sequential_p)
    mde = minimum_detectable_effect(math.sqrt(var_a), math.sqrt(var_b), control.n, treatment.n)
    significant = (sequential < ALPHA) and not broken
    base.difference, base.difference_interval = difference, interval
    base.relative_lift, base.relative_interval = relative, relative_interval
    base.p_value, base.sequential_p, base.mde = p, sequential, mde
    base.significant = significant
    what = "converts" if binary else "scores"
    a, b = names
    if broken:
        base.verdict = (f"Assignment looks broken: the groups are {control.n} and "
                        f"{treatment.n} outcomes against a configured {1 - split:.0%}/{split:.0%} "
                        f"split ({p_text(srm)}); fix it before reading any result.")
    elif significant:
        improves = (difference > 0) == higher_is_better
        direction = "better" if improves else "worse"
        amount = (f"{abs(relative):.1%}" if relative is not None else f"{abs(difference):.3g}")
        low, high = (relative_interval if relative_interval is not None else interval)
        fmt = (lambda v: f"{v:.1%}") if relative_interval is not None else (lambda v: f"{v:.3g}")
        if metric:
            moved = "higher" if difference > 0 else "lower"
            claim = f"{b}'s {metric} is {amount} {moved} than {a}'s, so {b} does {direction}"
        else:
            claim = f"{b} {what} {amount} {direction} than {a}"
        base.verdict = (f"{claim} (95% CI {fmt(low)} to {fmt(high)}); enough evidence by the "
                        f"always-valid sequential test ({p_text(sequential)}).")
    else:
        needed = _units_needed(difference, var_a, var_b, control.n, treatment.n)
        base.units_needed = needed
        if needed:
            more = f" about {needed:,} more outcomes per group would settle a difference of this size"
        elif needed == 0:
            more = (" a test read once would call it, but the always-valid test, which may be "
                    "read every day, needs somewhat more data")
        else:
            smallest = f"{100 * mde:.2f} percentage points" if binary else f"{mde:.3g}"
            more = (f" no difference is visible so far, and one smaller than {smallest} could "
                    "not be detected yet")
        if binary:  # rates: differences in percentage points
            shown = (f"{100 * difference:+.2f} percentage points (95% CI "
                     f"{100 * interval[0]:+.2f} to {100 * interval[1]:+.2f})")
        else:
            shown = f"{difference:+.3g} (95% CI {interval[0]:+.3g} to {interval[1]:+.3g})"
        base.verdict = f"Not enough evidence yet: {b} − {a} = {shown};{more}."
    return base


def _units_needed(difference: float, var_a: float, var_b: float, n_a: int,
                  n_b: int) -> int | None:
    """Units per group (beyond those seen) for 80% power at this effect size."""
    if difference == 0:
        return None
    z = stats.norm.ppf(1 - ALPHA / 2) + stats.norm.ppf(0.8)
    per_group = z * z * (var_a + var_b) / (difference * difference)
    more = int(math.ceil(per_group - min(n_a, n_b)))
    return max(more, 0) if per_group < 1e9 else None
