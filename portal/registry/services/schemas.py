"""A version's input schema, filled in by the portal when the uploader leaves it empty.

What the portal knows: the artifact's feature names (``feature_names_in_``, read by the
worker that validates it: an artifact is never loaded in the web process). Without them,
only the uploader can say the model was fitted on the parent version's inputs or the
dataset's columns (without its target) in that order, by choosing them. Types come from the parent's schema or the
dataset's columns where they name the feature, else "double"."""

from __future__ import annotations

from ops.schema import FEATURE_TYPES
from portal.errors import ValidationFailed
from portal.registry.choices import SchemaSource
from portal.registry.models import Dataset, ModelVersion, RegisteredModel

# What the upload form offers (``schema_from``).
CHOICES = [
    ("auto", "The artifact's feature names (a model fitted on a DataFrame records them); "
             "without them the version is refused, as the order of the inputs is unknown"),
    ("parent", "Same as the parent version"),
    ("dataset", "The dataset's columns (without its label column)"),
]


def _dtype_type(dtype: str, kind: str) -> str:
    if dtype.startswith("bool"):
        return "boolean"
    if dtype.startswith(("int", "uint", "Int", "UInt")):
        return "integer"
    return "double" if kind == "numeric" else "category"


def dataset_schema(dataset: Dataset) -> list[dict]:
    return [{"name": c["name"], "type": _dtype_type(c.get("dtype", ""), c.get("kind", ""))}
            for c in dataset.feature_columns]


def _parent(model: RegisteredModel, metadata: dict) -> ModelVersion | None:
    number = metadata.get("parent")
    if not isinstance(number, int) or isinstance(number, bool):
        return None
    return ModelVersion.objects.filter(model=model, number=number).first()


def _dataset(model: RegisteredModel, metadata: dict) -> Dataset | None:
    pk = metadata.get("dataset")
    if not isinstance(pk, int) or isinstance(pk, bool):
        return None
    return Dataset.objects.filter(project=model.project_id, pk=pk).first()


def known_schema(parent: ModelVersion | None, dataset: Dataset | None):
    """(schema, source) from the parent, else the dataset; (None, "") if neither has one."""
    if parent is not None and parent.input_schema:
        return parent.input_schema, SchemaSource.PARENT
    if dataset is not None and dataset.columns:
        return dataset_schema(dataset) or None, SchemaSource.DATASET
    return None, ""


def fill_in(model: RegisteredModel, metadata: dict, schema_from: str) -> tuple[dict, str]:
    """The upload's metadata with an input schema, and where it comes from. ``schema_from``
    "parent" or "dataset" takes theirs now (a 400 naming what is missing); "auto" leaves
    the artifact's feature names for the worker, with what is known meanwhile standing in
    (checked by the same rules as a typed schema)."""
    parent, dataset = _parent(model, metadata), _dataset(model, metadata)
    if schema_from == SchemaSource.PARENT:
        if parent is None or not parent.input_schema:
            raise ValidationFailed("choose the parent version to take its input schema from",
                                   field="parent")
        return {**metadata, "input_schema": parent.input_schema}, SchemaSource.PARENT
    if schema_from == SchemaSource.DATASET:
        schema = dataset_schema(dataset) if dataset is not None else []
        if not schema:
            raise ValidationFailed("choose a dataset whose columns (profiled) give the inputs",
                                   field="dataset")
        return {**metadata, "input_schema": schema}, SchemaSource.DATASET
    schema, _source = known_schema(parent, dataset)
    # Nothing known yet: a stand-in that passes the metadata's checks; the worker replaces
    # it with the artifact's names or refuses the version.
    return {**metadata, "input_schema": schema or [{"name": "unknown", "type": "double"}]}, \
        SchemaSource.AUTO


def from_artifact(version: ModelVersion, names: list[str] | None) -> tuple[list[dict], str]:
    """The schema the worker settles on for a version whose schema is "auto": the
    artifact's ``names``, typed from what the parent or dataset say of them. ``ValueError``
    without names."""
    parent, dataset = version.parent, version.dataset
    if names:
        types = {}
        if dataset is not None:
            types.update({f["name"]: f["type"] for f in dataset_schema(dataset)})
        if parent is not None:
            types.update({f["name"]: f.get("type") for f in parent.input_schema})
        return [{"name": n, "type": types.get(n) if types.get(n) in FEATURE_TYPES
                 else "double"} for n in names], SchemaSource.ARTIFACT
    # Without names nothing tells which column is which: the parent's or the dataset's
    # order would be a guess, and a wrong one feeds every prediction the wrong features.
    raise ValueError("the artifact carries no feature names (fit it on a DataFrame to record "
                     "feature_names_in_), so the portal cannot tell which input is which: "
                     "declare the input schema, or choose the parent version's or the "
                     "dataset's if the model was fitted on those columns in that order")


def schema_words(version: ModelVersion) -> str:
    """What the upload's answer says of the version's input schema."""
    count = len(version.input_schema)
    if version.schema_source == SchemaSource.AUTO:
        return "Input schema: the worker reads it from the artifact's feature names."
    if version.schema_source == SchemaSource.DECLARED:
        return f"Input schema: {count} features, as declared."
    return f"Input schema: {count} features, from {SchemaSource(version.schema_source).label}."
