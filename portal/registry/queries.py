"""Querysets shared by the API and the pages, shaped so a page costs a constant number of
queries whatever its size."""

from django.db.models import Count, OuterRef, Prefetch, Subquery

from portal.accounts.services import filter_visible
from portal.registry.models import Alias, Dataset, ModelVersion, Project, RegisteredModel


def projects_for(user):
    return filter_visible(Project.objects.all(), user, "pk").select_related(
        "archived_by").annotate(
        model_count=Count("models", distinct=True)).order_by("name")


def visible_models(user):
    """Models the user may see, without the list annotations."""
    return filter_visible(RegisteredModel.objects.all(), user, "project")


def models_for(user):
    versions = ModelVersion.objects.filter(model=OuterRef("pk"))
    return (
        filter_visible(RegisteredModel.objects.all(), user, "project")
        .select_related("project", "created_by", "archived_by")
        .annotate(
            latest_version=Subquery(versions.order_by("-number").values("number")[:1]),
            version_count=Subquery(versions.values("model").annotate(c=Count("*")).values("c")),
        )
        .prefetch_related(Prefetch("aliases", queryset=Alias.objects.select_related("version")))
    )


def versions_for(user):
    # Parent and dataset come in their own queries rather than as joins: with them joined,
    # PostgreSQL spent longer planning the list query (8 relations once a tag filter and
    # the visibility subquery are added) than running it, and every row carried a copy of
    # its dataset's baseline profile. A prefetch also reads each dataset only once per page.
    return (
        filter_visible(ModelVersion.objects.all(), user, "model__project")
        .select_related("model__project", "created_by")
        .prefetch_related(
            "tags",
            Prefetch("aliases", queryset=Alias.objects.only(
                "id", "name", "version_id", "model_id")),
            # A parent is only ever shown by its number, label and link.
            Prefetch("parent", queryset=ModelVersion.objects.only("model", "number", "label")),
            Prefetch("dataset", queryset=Dataset.objects.defer("columns", "profile")),
        )
    )


# The columns a model page's table shows (with what its links and badges read): a page of
# 25 versions otherwise decodes every version's schema, classes and parameters too.
VERSION_TABLE_COLUMNS = ("number", "label", "status", "status_reason", "artifact_format",
                         "estimator", "metrics", "parent", "dataset", "created_at",
                         "model__name", "model__project__slug", "created_by__username")


def version_table_for(user):
    """Versions for a model page's table: aliases, parent and dataset by name, no tags."""
    return (
        filter_visible(ModelVersion.objects.all(), user, "model__project")
        .select_related("model__project", "created_by")
        .only(*VERSION_TABLE_COLUMNS)
        .prefetch_related(
            Prefetch("aliases", queryset=Alias.objects.only(
                "id", "name", "version_id", "model_id")),
            Prefetch("parent", queryset=ModelVersion.objects.only("model", "number", "label")),
            Prefetch("dataset", queryset=Dataset.objects.only("id", "name", "project_id")),
        )
    )


def version_rows_for(user):
    """Versions for a summary row (model, number, status, author, time): none of the JSON
    columns nor the related rows a version page shows."""
    return (filter_visible(ModelVersion.objects.all(), user, "model__project")
            .select_related("model__project", "created_by")
            .defer("description", "classes", "input_schema", "output_schema", "metrics",
                   "params", "model__description", "model__project__description"))


def datasets_for(user):
    return filter_visible(Dataset.objects.all(), user, "project").select_related(
        "project", "created_by", "archived_by")
