"""ops.serving.routing: weighted random routing and sticky unit assignment."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from ops.plan import ServingPlan, Variant
from ops.serving.routing import Router


def plan(weights: dict, sticky=False, shadow=None) -> ServingPlan:
    return ServingPlan(endpoint="churn", sticky=sticky, shadow=shadow, variants=tuple(
        Variant(name=n, version_id=i, artifact_uri=f"file:///m/{n}", sha256="0" * 64, weight=w)
        for i, (n, w) in enumerate(weights.items())))


def test_weighted_choice_follows_the_plan_weights():
    p = plan({"stable": 90, "canary": 10})
    router = Router(p.endpoint, p.weights(), rng=random.Random(1))
    counts = Counter(router.choose() for _ in range(20000))
    assert abs(counts["canary"] / 20000 - 0.10) < 0.01


def test_zero_weight_and_shadow_variants_get_no_live_traffic():
    p = plan({"stable": 1, "idle": 0, "mirror": 5}, shadow="mirror")
    router = Router(p.endpoint, p.weights(), rng=random.Random(2))
    assert set(router.choose() for _ in range(2000)) == {"stable"}


def test_sticky_unit_always_reaches_the_same_variant():
    p = plan({"a": 50, "b": 50}, sticky=True)
    router = Router(p.endpoint, p.weights(), sticky=True)
    for unit in (f"user-{i}" for i in range(200)):
        first = router.choose(unit)
        assert all(router.choose(unit) == first for _ in range(5))


def test_sticky_assignment_matches_the_split():
    p = plan({"a": 30, "b": 70}, sticky=True)
    router = Router(p.endpoint, p.weights(), sticky=True)
    counts = Counter(router.choose(f"u{i}") for i in range(20000))
    assert abs(counts["a"] / 20000 - 0.30) < 0.015


def test_sticky_assignment_does_not_depend_on_variant_order_or_instance():
    one = Router("e", {"a": 0.5, "b": 0.5}, sticky=True)
    two = Router("e", {"b": 0.5, "a": 0.5}, sticky=True)
    assert all(one.choose(f"u{i}") == two.choose(f"u{i}") for i in range(500))


def test_ramping_the_split_only_moves_units_towards_the_growing_variant():
    before = Router("e", {"a": 0.9, "b": 0.1}, sticky=True)
    after = Router("e", {"a": 0.8, "b": 0.2}, sticky=True)
    moved = [u for u in (f"u{i}" for i in range(5000)) if before.choose(u) != after.choose(u)]
    assert moved, "a 10 % ramp should move some units"
    assert all(before.choose(u) == "a" and after.choose(u) == "b" for u in moved)
    assert abs(len(moved) / 5000 - 0.10) < 0.02


def test_without_sticky_a_unit_id_does_not_pin_the_variant():
    router = Router("e", {"a": 0.5, "b": 0.5}, sticky=False, rng=random.Random(3))
    assert len({router.choose("same-user") for _ in range(200)}) == 2


def test_a_router_needs_some_traffic():
    with pytest.raises(ValueError):
        Router("e", {"a": 0.0})
