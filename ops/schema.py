"""Input schemas of model versions: a list of named, typed features.

The same parser is used by the portal (to reject bad metadata), the artifact validator
(to compare with what the estimator saw when fitted) and, later, the model server.
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
