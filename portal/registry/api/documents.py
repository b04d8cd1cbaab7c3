"""The documents of the registry's two busiest lists, versions and models, built from rows.

A page of 100 versions read as model instances cost the web process about two thirds of its
time in Django's prefetching, which gives every row a filtered queryset per relation
(two clones of a query per row for tags and aliases), and in building four instances per
row (benchmarks/registry_api.py, decision 64). Here a page is read as value rows of only the
columns its document shows (a version's parent number and dataset by subquery), the tags
and aliases of the whole page in one more query, and the documents are assembled as plain
dicts.

The serializers stay what the API publishes (the OpenAPI schema) and what single objects
go through; tests/integration/test_registry_documents.py checks that both write the same
document for every kind of row.
"""

import re
from collections import defaultdict

import orjson
from django.db import connection
from django.db.models import ExpressionWrapper, F, JSONField, OuterRef, Subquery, TextField, Value

from portal.registry.api.serializers import artifact_url, iso_datetime
from portal.registry.choices import ArtifactFormat
from portal.registry.models import Alias, Dataset, ModelVersion, VersionTag
from portal.registry.queries import AnyOf

# What a version's document shows (ModelVersionSerializer.Meta.fields), by column; the
# parent's number and the dataset's name and digest are the annotations of version_rows,
# and so are the JSON columns as their text (<column>_json), which ``load_json`` reads.
VERSION_COLUMNS = (
    "id", "model_id", "model__name", "model__project", "model__project__slug", "number",
    "label", "description", "status", "status_reason", "artifact_sha256", "artifact_size",
    "artifact_format", "framework", "estimator", "classes_json", "input_schema_json",
    "schema_source", "output_schema_json", "metrics_json", "params_json", "dataset_id",
    "dataset_name", "dataset_sha256",
    "code_repository", "code_commit", "parent_id", "parent_number", "created_at",
    "created_by__username", "validated_at")

# A version's JSON columns, read as the text the database gives (the same column, no cast).
JSON_COLUMNS = ("classes", "input_schema", "output_schema", "metrics", "params")
JSON_FIELD = JSONField()
# Nineteen digits in a row: possibly an integer beyond 64 bits, which orjson reads as a float.
LONG_NUMBER = re.compile(r"[0-9](?=[0-9]{18})")

# What a model's document shows (RegisteredModelSerializer.Meta.fields); latest_version and
# version_count are the annotations of queries.models_for.
MODEL_COLUMNS = ("id", "project", "project__slug", "name", "task", "description",
                 "created_at", "created_by__username", "latest_version", "version_count",
                 "archived_at", "archived_by__username")


def version_rows(queryset):
    """``queryset`` (filtered, not yet paginated) read as the rows ``versions`` takes.

    The parent's number and the dataset's name and digest are scalar subqueries, not
    joins: two more relations in the join made PostgreSQL's planning of the list query
    several times longer than running it (decision 13), and a subquery on a primary key
    adds nothing to plan."""
    # No ORDER BY (the models' default ordering) in a subquery on a primary key.
    parent = ModelVersion.objects.filter(pk=OuterRef("parent_id")).order_by()
    dataset = Dataset.objects.filter(pk=OuterRef("dataset_id")).order_by()
    return (queryset.select_related(None).prefetch_related(None)
            .annotate(parent_number=Subquery(parent.values("number")),
                      dataset_name=Subquery(dataset.values("name")),
                      dataset_sha256=Subquery(dataset.values("sha256")),
                      **{f"{name}_json": ExpressionWrapper(F(name), output_field=TextField())
                         for name in JSON_COLUMNS})
            .values(*VERSION_COLUMNS))


def load_json(text):
    """What JSONField.from_db_value makes of a column's text (json.loads), read by orjson:
    about a fifth of the time. Text with a run of 19 digits or more (an integer orjson would
    read as a float), or that orjson refuses, is left to the standard library, as before."""
    if text is None:
        return None
    if LONG_NUMBER.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return JSON_FIELD.from_db_value(text, None, connection)


# The tags and aliases of a page, on PostgreSQL: one statement text whatever the page, so
# it is written once rather than built and compiled by the ORM on every request.
NAMES_SQL = (
    f'SELECT "version_id", "name", \'tag\' FROM "{VersionTag._meta.db_table}" '
    'WHERE "version_id" = ANY(%s::bigint[]) UNION ALL '
    f'SELECT "version_id", "name", \'alias\' FROM "{Alias._meta.db_table}" '
    'WHERE "version_id" = ANY(%s::bigint[])')


def names_of(ids: list[int]):
    """(version id, name, "tag" or "alias") of the tags and aliases of versions ``ids``."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(NAMES_SQL, [ids, ids])
            return cursor.fetchall()
    tags = VersionTag.objects.filter(AnyOf(F("version_id"), ids)).annotate(
        kind=Value("tag")).values_list("version_id", "name", "kind")
    aliases = Alias.objects.filter(AnyOf(F("version_id"), ids)).annotate(
        kind=Value("alias")).order_by().values_list("version_id", "name", "kind")
    return list(tags.union(aliases, all=True))


def versions(rows: list[dict]) -> list[dict]:
    """The documents of a page of ``version_rows``, in its order, and one more query (for
    the tags and aliases of the whole page)."""
    ids = [r["id"] for r in rows]
    names = {"tag": defaultdict(list), "alias": defaultdict(list)}
    if ids:
        for version_id, name, kind in names_of(ids):
            names[kind][version_id].append(name)
    documents = []
    for r in rows:
        pk, parent_id, dataset_id = r["id"], r["parent_id"], r["dataset_id"]
        documents.append({
            "id": pk, "model": r["model_id"], "model_name": r["model__name"],
            "project": r["model__project"], "project_slug": r["model__project__slug"],
            "number": r["number"], "label": r["label"], "description": r["description"],
            "status": r["status"], "status_reason": r["status_reason"],
            "artifact": {"sha256": r["artifact_sha256"], "size": r["artifact_size"],
                         "format": r["artifact_format"],
                         "unsafe": r["artifact_format"] == ArtifactFormat.PICKLE,
                         "download": artifact_url(pk)},
            "framework": r["framework"], "estimator": r["estimator"],
            "classes": load_json(r["classes_json"]),
            "input_schema": load_json(r["input_schema_json"]),
            "schema_source": r["schema_source"],
            "output_schema": load_json(r["output_schema_json"]),
            "metrics": load_json(r["metrics_json"]), "params": load_json(r["params_json"]),
            "dataset": ({"id": dataset_id, "name": r["dataset_name"],
                         "sha256": r["dataset_sha256"]} if dataset_id is not None else None),
            "code": {"repository": r["code_repository"], "commit": r["code_commit"]},
            "parent": ({"id": parent_id, "number": r["parent_number"]}
                       if parent_id is not None else None),
            "tags": sorted(names["tag"].get(pk, ())),
            "aliases": sorted(names["alias"].get(pk, ())),
            "created_at": iso_datetime(r["created_at"]),
            "created_by": r["created_by__username"],
            "validated_at": iso_datetime(r["validated_at"]),
        })
    return documents


def model_rows(queryset):
    """``queryset`` (of ``queries.models_for``, filtered) read as the rows ``models`` takes."""
    return queryset.select_related(None).prefetch_related(None).values(*MODEL_COLUMNS)


def models(rows: list[dict]) -> list[dict]:
    """The documents of a page of ``model_rows``: one more query, for the aliases."""
    aliases = defaultdict(list)
    for model_id, name, number, version_id, updated_at in Alias.objects.filter(
            AnyOf(F("model_id"), [r["id"] for r in rows])).order_by("name").values_list(
            "model_id", "name", "version__number", "version_id", "updated_at"):
        aliases[model_id].append({"name": name, "version": number, "version_id": version_id,
                                  "updated_at": iso_datetime(updated_at)})
    return [{
        "id": r["id"], "project": r["project"], "project_slug": r["project__slug"],
        "name": r["name"], "task": r["task"], "description": r["description"],
        "created_at": iso_datetime(r["created_at"]), "created_by": r["created_by__username"],
        "latest_version": r["latest_version"], "version_count": r["version_count"],
        "aliases": aliases.get(r["id"], []), "archived_at": iso_datetime(r["archived_at"]),
        "archived_by": r["archived_by__username"],
    } for r in rows]
