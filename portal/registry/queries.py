"""Querysets shared by the API and the pages, shaped so a page costs a constant number of
queries whatever its size."""

from django.core.exceptions import EmptyResultSet
from django.db.models import Count, OuterRef, Prefetch, Subquery
from django.db.models.lookups import In

from portal.accounts.services import filter_visible
from portal.accounts.visibility import visible_by
from portal.prepared import Prepared
from portal.registry.models import (
    Alias,
    Dataset,
    ModelVersion,
    Project,
    RegisteredModel,
    VersionTag,
)


class AnyOf(In):
    """``AnyOf(F("version_id"), ids)``: ``IN`` written ``= ANY(%s)`` on PostgreSQL.

    One statement text and one array parameter whatever the number of ids, so a page's
    related rows are read by a statement prepared once per connection (decision 37), and
    psycopg has no placeholder per id to parse: it took a 100-row page's four related
    queries from about 5 to 2 ms each (decision 64). Other databases get ``IN``."""

    def as_postgresql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        values = [value for value in self.rhs if value is not None]
        if not values:
            raise EmptyResultSet
        db_type = self.lhs.output_field.cast_db_type(connection)
        return f"{lhs} = ANY(%s::{db_type}[])", (*lhs_params, values)


def projects_for(user):
    return filter_visible(Project.objects.all(), user, "pk").select_related(
        "archived_by").annotate(
        model_count=Count("models", distinct=True)).order_by("name")


def visible_projects(user):
    """Projects the user may see, without the list annotations (a count of them is one
    plain query, not one over a grouped join)."""
    return filter_visible(Project.objects.all(), user, "pk")


def visible_models(user):
    """Models the user may see, without the list annotations."""
    return filter_visible(RegisteredModel.objects.all(), user, "project")


def visible_versions(user):
    """Versions the user may see, without the joins and prefetches of ``versions_for``: the
    API's lists read only the columns of their documents (``registry.api.documents``)."""
    return filter_visible(ModelVersion.objects.all(), user, "model__project")


def model_rows_for(user):
    """Models for a summary row (the dashboard's): name, task, project, latest version and
    aliases by name and number, and nothing else of the models or the aliased versions."""
    versions = ModelVersion.objects.filter(model=OuterRef("pk"))
    return (
        visible_models(user).select_related("project").only("name", "task", "project__slug")
        .annotate(latest_version=Subquery(versions.order_by("-number").values("number")[:1]))
        .prefetch_related(Prefetch("aliases", queryset=Alias.objects.select_related("version")
                                   .only("name", "model_id", "version__number")))
    )


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


@Prepared
def model_page(viewer, slug: str, name: str):
    """One model, for its page (``model_page.first(viewer_of(user), ...)``): none of the
    list annotations (latest version, aliases prefetched)."""
    return (visible_by(RegisteredModel.objects.all(), viewer, "project")
            .filter(project__slug=slug, name=name).select_related("project", "archived_by"))


@Prepared
def version_page(viewer, slug: str, name: str, number: int):
    """One version, for its page (``version_page.first(viewer_of(user), ...)``): as
    ``versions_for``, its dataset and MLflow source joined rather than prefetched (one row
    plans in no time; the dataset's profile and columns are not shown). Its tags, aliases
    and parent are read by the three below, prepared as well (a prefetch compiles anew)."""
    return (visible_by(ModelVersion.objects.all(), viewer, "model__project")
            .filter(model__project__slug=slug, model__name=name, number=number)
            .select_related("model__project", "created_by", "dataset", "mlflow_import")
            .defer("dataset__columns", "dataset__profile"))


@Prepared
def tag_names(version_id: int):
    return (VersionTag.objects.filter(version_id=version_id).order_by("name")
            .values_list("name", flat=True))


@Prepared
def alias_names(version_id: int):
    return (Alias.objects.filter(version_id=version_id).order_by("name")
            .values_list("name", flat=True))


@Prepared
def parent_of(parent_id: int):
    """A version's parent, as its page links it: number, label, model."""
    return ModelVersion.objects.filter(pk=parent_id).only("model", "number", "label")


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


def attach_model(model, *versions) -> None:
    """Give versions of ``model`` the model row at hand (loaded with its project), so what
    they link to (``get_absolute_url``) reads no more rows: a rollout's candidate and
    stable cost two queries each otherwise."""
    for version in versions:
        if version is not None and version.model_id == model.pk:
            version.model = model

