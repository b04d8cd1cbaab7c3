"""The version and model lists build their documents from rows (portal.registry.api.documents,
decision 64); they must say exactly what the declared serializers (the published schema)
say of the same objects, for every kind of row: a parent, a dataset, tags, aliases, a
pickle, nobody recorded as author, not yet validated, archived."""

import json
from datetime import UTC, datetime

import pytest
from django.utils import timezone
from rest_framework import serializers as drf

from portal.registry import queries
from portal.registry.api import documents
from portal.registry.api.serializers import ModelVersionSerializer, RegisteredModelSerializer
from portal.registry.models import Alias, Dataset, ModelVersion, RegisteredModel, VersionTag
from tests.portal_fixtures import schema

pytestmark = pytest.mark.django_db


@pytest.fixture
def registry(users, project, clf):
    """Versions of every shape in one model, a second (archived) model with an alias."""
    contributor = users["contributor"]
    dataset = Dataset.objects.create(project=project, name="training", uri="file:///d.csv",
                                     sha256="d" * 64, size=10, format="csv",
                                     created_by=contributor)

    def version(number, **fields):
        defaults = {"model": clf, "number": number, "artifact_uri": f"file:///{number}",
                    "artifact_sha256": f"{number:064d}", "artifact_size": 1000 + number,
                    "artifact_format": "skops", "input_schema": schema(),
                    "created_by": contributor}
        return ModelVersion.objects.create(**{**defaults, **fields})

    first = version(1, label="1.0.0", status="ready", classes=[0, 1],
                    metrics={"roc_auc": 0.97, "n": 12, "nested": {"a": [1.5, None, "x"]}},
                    params={"C": 1.0}, validated_at=timezone.now(),
                    code_repository="https://git.example.com/ml", code_commit="abc123")
    second = version(2, parent=first, dataset=dataset, status="ready",
                     description="line\u2028separated, ünïcode", output_schema={"k": "v"},
                     validated_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC))
    version(3, artifact_format="pickle", status="invalid", status_reason="bad",
            created_by=None)
    # Integers beyond 64 bits and long decimals, which orjson alone would read as floats.
    version(4, parent=second, status="pending",
            metrics={"seed": 2**70 + 1, "low": -(2**64) - 1, "max": 2**63 - 1,
                     "tiny": 1.5e-7, "long": 0.1234567890123456789, "n": 12345678901234567})
    VersionTag.objects.bulk_create([VersionTag(version=second, name=n) for n in ("b", "a")]
                                   + [VersionTag(version=first, name="nightly")])
    Alias.objects.create(model=clf, name="champion", version=second, updated_by=contributor)
    Alias.objects.create(model=clf, name="challenger", version=second)
    Alias.objects.create(model=clf, name="baseline", version=first)
    other = RegisteredModel.objects.create(project=project, name="retired", task="regression",
                                           created_by=None, archived_at=timezone.now(),
                                           archived_by=users["owner"])
    old = version(1, model=other, status="ready")
    Alias.objects.create(model=other, name="champion", version=old)
    return project


def declared_version(version) -> dict:
    """What DRF's field machinery writes from the declared fields (the schema)."""
    return dict(drf.ModelSerializer.to_representation(ModelVersionSerializer(), version))


def same_document(built: dict, declared: dict) -> None:
    assert built == declared
    assert list(built) == list(declared)  # and in the same order
    # and the same types (1 == 1.0): as written by the standard library, byte for byte
    assert json.dumps(built, default=str) == json.dumps(declared, default=str)


def test_version_documents_match_the_declared_serializer(registry, users):
    viewer = users["viewer"]
    rows = list(documents.version_rows(queries.versions_for(viewer)).order_by("id"))
    built = documents.versions(rows)
    instances = list(queries.versions_for(viewer).order_by("id"))
    assert len(built) == len(instances) == 5
    for document, version in zip(built, instances, strict=True):
        same_document(document, declared_version(version))


def test_model_documents_match_the_declared_serializer(registry, users):
    viewer = users["viewer"]
    rows = list(documents.model_rows(queries.models_for(viewer)).order_by("id"))
    built = documents.models(rows)
    instances = list(queries.models_for(viewer).order_by("id"))
    assert len(built) == len(instances) == 2
    for document, model in zip(built, instances, strict=True):
        same_document(document, dict(RegisteredModelSerializer(model).data))


@pytest.mark.parametrize("url", ["/api/v1/versions/?page_size=3",
                                 "/api/v1/versions/?tag=a&ordering=number",
                                 "/api/v1/models/{clf}/versions/?page_size=2"])
def test_version_lists_answer_the_declared_documents(registry, api, users, clf, url):
    client, visible = api("viewer"), queries.versions_for(users["viewer"])
    answer, pages = client.get(url.format(clf=clf.pk)).json(), 1
    while True:
        for document in answer["results"]:
            same_document(document, declared_version(visible.get(pk=document["id"])))
        if not answer["next"]:
            break
        answer, pages = client.get(answer["next"]).json(), pages + 1
    assert pages >= 2 or "tag" in url  # the cursor carries on from where a page ended


@pytest.mark.parametrize("query", ["", "?archived=true"])
def test_model_lists_answer_the_declared_documents(registry, api, users, query):
    answer = api("viewer").get(f"/api/v1/models/{query}").json()
    assert answer["count"] == 1
    model = queries.models_for(users["viewer"]).get(pk=answer["results"][0]["id"])
    same_document(answer["results"][0], dict(RegisteredModelSerializer(model).data))
