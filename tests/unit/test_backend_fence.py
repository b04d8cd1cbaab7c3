"""ops.backends.base: the generation fence every backend's apply goes through, and the
digest that tells a re-apply of a recorded plan from another plan claiming its generation."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ops.backends.base import PlanConflict, StalePlan, check_generation, plan_digest
from ops.plan import ServingPlan, Variant

STABLE = Variant("stable", 7, "file:///m/7.skops", "a" * 64, 0.9)
CANDIDATE = Variant("candidate", 8, "file:///m/8.skops", "b" * 64, 0.1)
CANARY = ServingPlan("churn", (STABLE, CANDIDATE), generation=4)


def test_the_digest_is_the_plans_content_not_its_generation():
    assert plan_digest(replace(CANARY, generation=9)) == plan_digest(CANARY)
    shifted = replace(CANARY, variants=(replace(STABLE, weight=0.5),
                                        replace(CANDIDATE, weight=0.5)))
    assert plan_digest(shifted) != plan_digest(CANARY)
    assert plan_digest(replace(CANARY, sticky=True)) != plan_digest(CANARY)


def test_a_plan_that_gained_version_numbers_or_default_fields_is_the_same_plan():
    numbered = replace(CANARY, variants=(replace(STABLE, version_number=3),
                                         replace(CANDIDATE, version_number=4)))
    assert plan_digest(numbered) == plan_digest(CANARY)
    spelled_out = replace(CANARY, variants=(replace(STABLE, replicas=1, trusted_types=()),
                                            CANDIDATE))
    assert plan_digest(spelled_out) == plan_digest(CANARY)


def test_an_older_generation_is_stale_and_the_message_names_both():
    with pytest.raises(StalePlan, match="generation 4 of churn is older than generation 6") \
            as refused:
        check_generation(CANARY, 6, None, "the endpoint")
    assert (refused.value.generation, refused.value.recorded, refused.value.code) == \
        (4, 6, "stale_plan")


def test_the_recorded_generation_with_other_content_conflicts():
    with pytest.raises(PlanConflict, match="new generation"):
        check_generation(CANARY, 4, "0" * 16, "the endpoint")


def test_a_re_apply_a_newer_plan_or_nothing_recorded_passes():
    check_generation(CANARY, 4, plan_digest(CANARY), "the endpoint")
    check_generation(CANARY, 4, None, "the endpoint")  # recorded before digests were
    check_generation(CANARY, 3, "0" * 16, "the endpoint")
    check_generation(CANARY, None, None, "the endpoint")
