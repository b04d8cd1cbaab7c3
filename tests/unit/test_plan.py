"""ops.plan: a plan carries each variant's version number; plans written before still load
and serialize byte for byte as they did."""

from __future__ import annotations

import json

import pytest

from ops.plan import PlanError, ServingPlan, Variant


def variant(**extra) -> Variant:
    return Variant(**{"name": "stable", "version_id": 7, "artifact_uri": "file:///m/7.skops",
                      "sha256": "a" * 64, "weight": 1.0, **extra})


def test_a_variant_reports_its_number_or_else_its_id():
    assert variant(version_number=4).version == 4
    assert variant().version == 7


def test_the_number_survives_json_and_a_string_number_is_read_as_int():
    plan = ServingPlan("churn", (variant(version_number=4),), generation=2)
    again = ServingPlan.from_json(plan.to_json())
    assert again == plan and again.variants[0].version_number == 4
    data = json.loads(plan.to_json())
    data["variants"][0]["version_number"] = "5"
    assert ServingPlan.from_dict(data).variants[0].version_number == 5
    data["variants"][0]["version_number"] = "v5"
    with pytest.raises(PlanError):
        ServingPlan.from_dict(data)


def test_a_plan_written_before_numbers_loads_and_serializes_unchanged():
    old = json.dumps({"endpoint": "churn", "generation": 3, "shadow": None, "sticky": False,
                      "variants": [{"name": "stable", "version_id": 7,
                                    "artifact_uri": "file:///m/7.skops", "sha256": "a" * 64,
                                    "weight": 1.0, "replicas": 1, "trusted_unsafe": False,
                                    "input_schema": [], "baseline": {},
                                    "task": "classification", "trusted_types": []}]},
                     sort_keys=True)
    plan = ServingPlan.from_json(old)
    assert plan.variants[0].version_number is None and plan.variants[0].version == 7
    # Backends hash the plan's JSON (SageMaker Model names, pod checksums): unchanged bytes.
    assert plan.to_json() == old


def test_a_plan_from_a_newer_portal_loads_its_fields_left_out():
    """A model server on an older image keeps loading plans written after an upgrade: a
    variant field it does not know is left out, never a refused plan (which once failed
    every release until the servers were restarted)."""
    import json

    data = json.loads(ServingPlan("e", (Variant("stable", 1, "file:///a", "0" * 64, 1.0),),
                                  generation=3).to_json())
    data["variants"][0]["a_field_from_the_future"] = {"x": 1}
    plan = ServingPlan.from_dict(data)
    assert plan.generation == 3 and plan.variants[0].version_id == 1
