"""Input schemas of model versions: a list of named, typed features.

The same parser is used by the portal (to reject bad metadata), the artifact validator
(to compare with what the estimator saw when fitted) and, later, the model server.
``interface_differences`` says how a release candidate's inputs differ from those of the
version it would replace, before any traffic reaches it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

FEATURE_TYPES = ("double", "integer", "boolean", "category", "string")
NUMERIC_TYPES = ("double", "integer", "boolean")


class SchemaError(ValueError):
    """The schema document is malformed; the message names the offending entry."""


@dataclass(frozen=True)
class Feature:
    name: str
    type: str = "double"
    nullable: bool = False

    @property
    def numeric(self) -> bool:
        return self.type in NUMERIC_TYPES


def parse_input_schema(document) -> list[Feature]:
    """Parse ``[{"name": ..., "type": ...}, ...]`` (or ``{"features": [...]}``).

    Bare strings are accepted as a shorthand for a ``double`` feature of that name.
    """
    if isinstance(document, dict) and "features" in document:
        document = document["features"]
    if not isinstance(document, list) or not document:
        raise SchemaError("input_schema must be a non-empty list of features")
    features: list[Feature] = []
    seen: set[str] = set()
    for position, entry in enumerate(document):
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict):
            raise SchemaError(f"input_schema[{position}] must be an object with a name and a type")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise SchemaError(f"input_schema[{position}] has no name")
        kind = entry.get("type", "double")
        if kind not in FEATURE_TYPES:
            raise SchemaError(
                f"input_schema[{position}] ({name}): type {kind!r} is not one of "
                + ", ".join(FEATURE_TYPES)
            )
        nullable = entry.get("nullable", False)
        if not isinstance(nullable, bool):
            raise SchemaError(f"input_schema[{position}] ({name}): nullable must be true or false")
        unknown = set(entry) - {"name", "type", "nullable", "description"}
        if unknown:
            raise SchemaError(
                f"input_schema[{position}] ({name}): unknown keys " + ", ".join(sorted(unknown))
            )
        if name in seen:
            raise SchemaError(f"input_schema: feature {name!r} appears twice")
        seen.add(name)
        features.append(Feature(name=name, type=kind, nullable=nullable))
    return features


def schema_document(features: list[Feature]) -> list[dict]:
    """The canonical JSON form stored with a version."""
    return [asdict(feature) for feature in features]


def interface_differences(serving: list[Feature], candidate: list[Feature]) -> list[str]:
    """How a candidate's inputs differ from those of the version serving now, as short
    sentences (empty: whoever calls one can call the other unchanged).

    Callers send rows by position as well as by name (``ops/serving/inputs.py``), so the
    names, their order, their count and their types all matter; a feature that stops
    accepting nulls matters too (one that starts accepting them does not). Positions count
    from 1. A feature shifted only because another was removed or added before it is not
    reported as moved (the missing or extra one is); a change in the order of the features
    both have is.
    """
    differences = []
    if len(serving) != len(candidate):
        differences.append(f"feature count {len(serving)} → {len(candidate)}")
    differences += _absent(serving, candidate, "missing")
    differences += _absent(candidate, serving, "extra")
    differences += _moved(serving, candidate)
    differences += _changed(serving, candidate)
    return differences


def _absent(have: list[Feature], other: list[Feature], word: str) -> list[str]:
    names = {f.name for f in other}
    return [f"{word} feature {f.name} (position {i})"
            for i, f in enumerate(have, 1) if f.name not in names]


def _moved(serving: list[Feature], candidate: list[Feature]) -> list[str]:
    before = {f.name: i for i, f in enumerate(serving, 1)}
    after = {f.name: i for i, f in enumerate(candidate, 1)}
    shared_before = [f.name for f in serving if f.name in after]
    shared_after = [f.name for f in candidate if f.name in before]
    return [f"feature {name} moved from position {before[name]} to {after[name]}"
            for i, name in enumerate(shared_after) if shared_before[i] != name]


def _changed(serving: list[Feature], candidate: list[Feature]) -> list[str]:
    before = {f.name: f for f in serving}
    differences = []
    for feature in candidate:
        old = before.get(feature.name)
        if old is None:
            continue
        if old.type != feature.type:
            differences.append(f"type of {feature.name} {old.type} → {feature.type}")
        if old.nullable and not feature.nullable:
            differences.append(f"feature {feature.name} no longer accepts null")
    return differences
