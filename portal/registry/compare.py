"""Versions of one model side by side: metrics (the best of each marked, with the direction
that counts as better), parameters, input schemas (what was added, removed or retyped
against the first version chosen) and lineage. Plain data for the compare page; the rows
are read once (``versions_to_compare``), nothing here queries."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from django.db.models import Prefetch

from explainability.diff import HIGHER_IS_BETTER, LOWER_IS_BETTER
from ops.schema import SchemaError, interface_differences, parse_input_schema
from portal.registry import queries
from portal.registry.choices import EvaluationStatus
from portal.registry.models import Evaluation

MAX_COMPARED = 8


def chosen_numbers(values: list[str]) -> list[int]:
    """The version numbers asked for (``?v=1&v=3``, or ``?v=1,3``), deduplicated, in order;
    anything else (and numbers no version can have) left out."""
    numbers: list[int] = []
    for value in values:
        for part in value.split(","):
            part = part.strip().lstrip("v")
            if part.isdigit() and len(part) <= 9 and int(part) not in numbers:
                numbers.append(int(part))
    return numbers


def versions_to_compare(user, model, numbers: list[int]) -> list:
    """The chosen versions of ``model`` the user may read, oldest first, with their
    evaluations (and datasets) prefetched: one read whatever is compared."""
    measured = Evaluation.objects.filter(status=EvaluationStatus.READY).select_related(
        "dataset").only("version_id", "metrics", "status", "dataset__name", "dataset__id",
                        "dataset__created_at")
    return list(queries.versions_for(user).filter(model=model, number__in=numbers)
                .prefetch_related(Prefetch("evaluations", queryset=measured))
                .order_by("number")[:MAX_COMPARED])


def direction(name: str) -> str:
    """"higher" or "lower" (is better), or "" when the portal does not know the metric."""
    key = name.lower()
    if key in HIGHER_IS_BETTER:
        return "higher"
    if key in LOWER_IS_BETTER:
        return "lower"
    return ""


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass
class MetricRow:
    name: str
    source: str  # "declared", or the evaluation dataset's name (measured)
    direction: str
    values: list = field(default_factory=list)
    best: set = field(default_factory=set)  # positions of the best value(s)

    @property
    def cells(self) -> list[tuple]:
        return [(value, i in self.best) for i, value in enumerate(self.values)]


def _metric_row(name: str, source: str, values: list) -> MetricRow:
    row = MetricRow(name, source, direction(name), values)
    numbers = [_number(v) for v in values]
    present = [n for n in numbers if n is not None]
    if row.direction and len(present) > 1 and len(set(present)) > 1:
        best = max(present) if row.direction == "higher" else min(present)
        row.best = {i for i, n in enumerate(numbers) if n == best}
    return row


def metric_rows(versions: list) -> list[MetricRow]:
    """Declared metrics first (every name any version declares), then what the portal
    measured on each evaluation dataset."""
    declared = sorted({name for v in versions for name in (v.metrics or {})})
    rows = [_metric_row(name, "declared", [(v.metrics or {}).get(name) for v in versions])
            for name in declared]
    measured: dict[tuple[str, str], dict[int, object]] = {}
    for i, version in enumerate(versions):
        for evaluation in version.evaluations.all():
            for name, value in (evaluation.metrics or {}).items():
                measured.setdefault((name, evaluation.dataset.name), {})[i] = value
    for (name, dataset), values in sorted(measured.items()):
        rows.append(_metric_row(name, dataset, [values.get(i) for i in range(len(versions))]))
    return rows


def param_rows(versions: list) -> list[dict]:
    names = sorted({name for v in versions for name in (v.params or {})})
    rows = []
    for name in names:
        values = [(v.params or {}).get(name) for v in versions]
        rows.append({"name": name, "values": values,
                     "differs": len({repr(value) for value in values}) > 1})
    return rows


def _features(version) -> list:
    try:
        return parse_input_schema(version.input_schema)
    except SchemaError:
        return []


def _kind(feature) -> str:
    return feature.type + (" (nullable)" if feature.nullable else "")


def schema_rows(versions: list) -> list[dict]:
    """One row per input feature any version takes, in the first version's order (then the
    others' new ones): its type in each version, and how it changed against the first."""
    features = [{f.name: f for f in _features(v)} for v in versions]
    order: list[str] = []
    for found in features:
        order += [name for name in found if name not in order]
    rows = []
    for name in order:
        kinds = [_kind(found[name]) if name in found else None for found in features]
        rows.append({"name": name, "kinds": kinds, "change": _change(kinds)})
    return rows


def _change(kinds: list) -> str:
    first, others = kinds[0], kinds[1:]
    if first is None:
        return "added"
    if any(kind is None for kind in others):
        return "removed"
    if any(kind != first for kind in others):
        return "changed type"
    return ""


def interface_notes(versions: list) -> list[tuple]:
    """(version, how its inputs differ from the first version's) for each later version."""
    base = _features(versions[0]) if versions else []
    return [(v, interface_differences(base, _features(v))) for v in versions[1:]]


def comparison(versions: list) -> dict:
    """Everything the compare page shows about ``versions`` (oldest first)."""
    schema = schema_rows(versions)
    return {
        "metric_rows": metric_rows(versions),
        "param_rows": param_rows(versions),
        "schema_rows": schema,
        "schema_changes": sum(1 for row in schema if row["change"]),
        "interface_notes": interface_notes(versions),
    }
