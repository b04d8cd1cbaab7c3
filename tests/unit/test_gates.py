import pytest

from ops.gates import GateRuleError, evaluate, parse_rules


def test_absolute_thresholds():
    results = evaluate([{"metric": "auc", "min": 0.9}, {"metric": "loss", "max": 0.2}],
                       {"auc": 0.93, "loss": 0.25}, None)
    assert [r.passed for r in results] == [True, False]
    assert "0.25 > 0.2" in results[1].detail


def test_comparison_with_the_champion():
    rules = [{"metric": "auc", "max_drop": 0.01}, {"metric": "rmse", "max_rise": 1.0}]
    worse = evaluate(rules, {"auc": 0.95, "rmse": 54.0}, {"auc": 0.97, "rmse": 52.5})
    assert [r.passed for r in worse] == [False, False]
    assert worse[0].champion == 0.97 and "drop 0.02 > 0.01" in worse[0].detail
    better = evaluate(rules, {"auc": 0.975, "rmse": 52.0}, {"auc": 0.97, "rmse": 52.5})
    assert all(r.passed for r in better) and "not worse" in better[0].detail


def test_first_release_passes_comparisons_and_says_why():
    [result] = evaluate([{"metric": "auc", "max_drop": 0.01}], {"auc": 0.5}, None)
    assert result.passed and "no champion" in result.detail


def test_unrecorded_metric_fails():
    [result] = evaluate([{"metric": "auc", "min": 0.5}], {"accuracy": 0.9}, {"auc": 0.9})
    assert not result.passed and result.value is None and "not recorded" in result.detail


@pytest.mark.parametrize("rules", [
    {"metric": "auc"}, [{"min": 0.5}], [{"metric": "auc", "min": 0.5, "max": 0.9}],
    [{"metric": "auc", "above": 0.5}], [{"metric": "auc", "min": "high"}],
    [{"metric": "auc", "min": float("nan")}], [{"metric": "auc", "min": True}],
])
def test_malformed_rules_are_refused(rules):
    with pytest.raises(GateRuleError):
        parse_rules(rules)


def test_a_drop_exactly_at_the_limit_passes_despite_float_noise():
    [result] = evaluate([{"metric": "auc", "max_drop": 0.02}], {"auc": 0.95}, {"auc": 0.97})
    assert result.passed


def test_rules_scoped_to_a_model_apply_to_that_model_only():
    rules = [{"metric": "r2", "min": 0.4, "model": "regressor"}, {"metric": "auc", "min": 0.9}]
    assert [r.metric for r in evaluate(rules, {"auc": 0.95}, None, model="classifier")] == ["auc"]
    results = evaluate(rules, {"auc": 0.95, "r2": 0.3}, None, model="regressor")
    assert [(r.metric, r.passed) for r in results] == [("r2", False), ("auc", True)]
    with pytest.raises(GateRuleError):
        parse_rules([{"metric": "r2", "min": 0.4, "model": 3}])
