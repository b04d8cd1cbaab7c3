"""Projects, models, memberships, datasets, aliases, tokens and the schema through the API."""

import io

import pytest

from portal.audit.models import AuditEvent
from portal.registry.models import Dataset
from tests.portal_fixtures import metadata, stored_files

pytestmark = pytest.mark.django_db


def test_token_login_and_token_use(api, users):
    client = api(None)
    response = client.post("/api/v1/auth/token/", {"username": "carlos", "password": "pw-carlos"},
                           format="json")
    assert response.status_code == 201
    key = response.json()["token"]
    client.client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/projects/").status_code == 200
    token = users["contributor"].api_tokens.get(prefix=key[:10])
    assert token.key_hash != key and key not in token.key_hash
    assert token.last_used_at is not None


def test_a_password_login_takes_the_approve_scope_only_for_an_approver(api, users, project):
    """Approving, promoting and A/B decisions need the approve scope: an approver gets it
    from the same login (no second token made in the browser), a contributor is told why
    not, and the 403 of a token without it names the scope."""
    client = api(None)
    login = {"username": "alice", "password": "pw-alice", "scopes": ["read", "approve"]}
    response = client.post("/api/v1/auth/token/", login, format="json")
    assert response.status_code == 201, response.content
    assert users["approver"].api_tokens.get().scopes == ["read", "approve"]
    refused = client.post("/api/v1/auth/token/", {**login, "username": "carlos",
                                                  "password": "pw-carlos"}, format="json")
    assert refused.status_code == 403 and refused.json()["code"] == "scope_not_held"
    plain = client.post("/api/v1/auth/token/", {"username": "alice", "password": "pw-alice"},
                        format="json").json()["token"]
    client.client.credentials(HTTP_AUTHORIZATION=f"Token {plain}")
    lacking = client.post("/api/v1/deployments/1/promote/", {}, format="json")
    assert lacking.status_code == 403 and lacking.json()["code"] == "scope_required"
    assert "lacks the 'approve' scope" in lacking.json()["detail"]


def test_wrong_password_and_bad_body(api, users):
    client = api(None)
    response = client.post("/api/v1/auth/token/", {"username": "carlos", "password": "nope"},
                           format="json")
    assert response.status_code == 401 and response.json()["code"] == "authentication_failed"
    response = client.post("/api/v1/auth/token/", {"user": "carlos"}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "validation_error"
    # Any JSON value may arrive as the body; a bare `false` once reached .get (a 500).
    for body in (False, [], "carlos", 3, {"username": "carlos", "password": ["nope"]}):
        response = client.post("/api/v1/auth/token/", body, format="json")
        assert response.status_code == 400, body
        assert response.json()["code"] == "validation_error"


def test_revoked_token_stops_working(api, users):
    client = api("viewer")
    tokens = client.get("/api/v1/tokens/").json()["results"]
    assert [t["name"] for t in tokens] == ["tests"] and "key_hash" not in tokens[0]
    assert client.delete(f"/api/v1/tokens/{tokens[0]['id']}/").status_code == 204
    response = client.get("/api/v1/projects/")
    assert response.status_code == 401 and response.json()["code"] == "authentication_failed"


def test_created_token_is_shown_once(api):
    client = api("viewer")
    created = client.post("/api/v1/tokens/", {"name": "ci"}, format="json").json()
    assert created["token"].startswith("mg_")
    listed = client.get(f"/api/v1/tokens/{created['id']}/").json()
    assert "token" not in listed


def test_project_creation_makes_the_creator_owner_and_outsiders_see_nothing(api):
    response = api("viewer").post("/api/v1/projects/", {"name": "Fraud", "slug": "fraud"},
                                  format="json")
    assert response.status_code == 201 and response.json()["role"] == "owner"
    assert api("outsider").get(f"/api/v1/projects/{response.json()['id']}/").status_code == 404
    duplicate = api("owner").post("/api/v1/projects/", {"name": "F", "slug": "fraud"},
                                  format="json")
    assert duplicate.status_code == 409 and duplicate.json()["code"] == "duplicate_project"
    bad = api("owner").post("/api/v1/projects/", {"name": "F", "slug": "Has Spaces"},
                            format="json")
    assert bad.status_code == 400 and bad.json()["field"] == "slug"


def test_only_owners_change_project_settings(api, project):
    response = api("approver").patch(f"/api/v1/projects/{project.pk}/",
                                     {"description": "ours"}, format="json")
    assert response.status_code == 403 and response.json()["code"] == "role_required"
    response = api("owner").patch(f"/api/v1/projects/{project.pk}/",
                                  {"description": "ours"}, format="json")
    assert response.status_code == 200 and response.json()["description"] == "ours"
    event = AuditEvent.objects.filter(action="project.update").get()
    assert event.changes == {"description": {"from": "", "to": "ours"}}
    assert event.via == "api" and event.actor_name == "olivia"


def test_unsafe_artifacts_are_the_operators_and_staffs_decision(api, project, settings):
    """An owner cannot open their project to pickles: the instance must allow them (an
    environment variable), and then only staff may allow a project."""
    response = api("owner").patch(f"/api/v1/projects/{project.pk}/",
                                  {"allow_unsafe_artifacts": True}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "unsafe_disabled"
    created = api("owner").post("/api/v1/projects/", {"name": "P", "slug": "pickles",
                                                      "allow_unsafe_artifacts": True},
                                format="json")
    assert created.status_code == 400 and created.json()["code"] == "unsafe_disabled"
    settings.MODELGATE_ALLOW_UNSAFE_ARTIFACTS = True
    response = api("owner").patch(f"/api/v1/projects/{project.pk}/",
                                  {"allow_unsafe_artifacts": True}, format="json")
    assert response.status_code == 403 and response.json()["code"] == "staff_required"
    response = api("staff").patch(f"/api/v1/projects/{project.pk}/",
                                  {"allow_unsafe_artifacts": True}, format="json")
    assert response.status_code == 200 and response.json()["allow_unsafe_artifacts"] is True
    event = AuditEvent.objects.filter(action="project.update").get()
    assert event.changes == {"allow_unsafe_artifacts": {"from": False, "to": True}}
    assert event.actor_name == "sam"


def test_models_create_by_role(api, project):
    payload = {"project": project.pk, "name": "churn", "task": "classification"}
    assert api("viewer").post("/api/v1/models/", payload, format="json").status_code == 403
    assert api("outsider").post("/api/v1/models/", payload, format="json").status_code == 404
    response = api("contributor").post("/api/v1/models/", payload, format="json")
    assert response.status_code == 201 and response.json()["project_slug"] == "clinical-ml"
    again = api("contributor").post("/api/v1/models/", payload, format="json")
    assert again.status_code == 409 and again.json()["code"] == "duplicate_model"
    unknown = api("contributor").post("/api/v1/models/", {**payload, "project": 99999},
                                      format="json")
    # The same 404 as the outsider's: a 400 "does not exist" told which ids exist (issue 18).
    assert unknown.status_code == 404 and unknown.json() == {"code": "not_found",
                                                             "detail": "Not found."}
    bad_task = api("contributor").post("/api/v1/models/", {**payload, "task": "ranking"},
                                       format="json")
    assert bad_task.status_code == 400 and bad_task.json()["field"] == "task"


def test_model_list_shows_latest_version_and_aliases(api, clf, skops_bytes, forest_bytes):
    client = api("contributor")
    client.upload(clf.pk, skops_bytes, metadata())
    client.upload(clf.pk, forest_bytes, metadata())
    api("approver").put(f"/api/v1/models/{clf.pk}/aliases/champion/", {"version": 1},
                        format="json")
    row = client.get("/api/v1/models/?project_slug=clinical-ml").json()["results"][0]
    assert row["latest_version"] == 2 and row["version_count"] == 2
    assert row["aliases"][0]["name"] == "champion" and row["aliases"][0]["version"] == 1


def test_members_managed_by_owner_only_and_last_owner_kept(api, project, users):
    response = api("approver").post("/api/v1/invitations/", {
        "project": project.pk, "username": "oscar", "role": "viewer"}, format="json")
    assert response.status_code == 403
    response = api("owner").post("/api/v1/invitations/", {
        "project": project.pk, "username": "oscar", "role": "viewer"}, format="json")
    assert response.status_code == 201
    # A member only once oscar accepts (tests/security/test_invitations.py has the rest).
    assert api("outsider").get(f"/api/v1/projects/{project.pk}/").status_code == 404
    [invitation] = api("outsider").get("/api/v1/invitations/").json()["results"]
    accepted = api("outsider").post(f"/api/v1/invitations/{invitation['id']}/accept/")
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    assert api("outsider").get(f"/api/v1/projects/{project.pk}/").status_code == 200
    assert project.memberships.get(user=users["outsider"]).role == "viewer"
    unknown = api("owner").post("/api/v1/invitations/", {
        "project": project.pk, "username": "ghost", "role": "viewer"}, format="json")
    assert (unknown.status_code, unknown.json()) == (response.status_code, response.json())
    owner_membership = project.memberships.get(user=users["owner"])
    response = api("owner").patch(f"/api/v1/memberships/{owner_membership.pk}/",
                                  {"role": "viewer"}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "last_owner"


def test_aliases_need_the_right_role_and_a_ready_version(api, clf, skops_bytes, forest_bytes):
    client = api("contributor")
    client.upload(clf.pk, skops_bytes, metadata())
    client.upload(clf.pk, forest_bytes, metadata())
    url = f"/api/v1/models/{clf.pk}/aliases/"
    assert client.put(url + "champion/", {"version": 1}, format="json").status_code == 403
    assert client.put(url + "challenger/", {"version": 2}, format="json").status_code == 200
    assert api("approver").put(url + "champion/", {"version": 1}, format="json").status_code == 200
    moved = api("approver").put(url + "champion/", {"version": 2}, format="json")
    assert moved.status_code == 200 and moved.json()["version"] == 2
    assert api("viewer").get(url).json() == [
        {"name": "challenger", "version": 2, "version_id": moved.json()["version_id"],
         "updated_at": api("viewer").get(url).json()[0]["updated_at"]},
        {"name": "champion", "version": 2, "version_id": moved.json()["version_id"],
         "updated_at": api("viewer").get(url).json()[1]["updated_at"]},
    ]
    events = list(AuditEvent.objects.filter(action="alias.set").values_list("changes", flat=True))
    assert {"version": {"from": 1, "to": 2}} in events
    assert client.put(url + "champion/", {"version": 9}, format="json").status_code == 400


def test_alias_cannot_point_at_an_invalid_version(api, clf, skops_bytes):
    from tests.portal_fixtures import schema

    api("contributor").upload(clf.pk, skops_bytes, metadata(input_schema=schema(["x"] * 1)))
    response = api("approver").put(f"/api/v1/models/{clf.pk}/aliases/champion/",
                                   {"version": 1}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "version_not_ready"


def _csv(frame) -> io.BytesIO:
    buffer = io.BytesIO(frame.to_csv(index=False).encode())
    buffer.name = "train.csv"
    return buffer


def test_dataset_upload_profiles_it_and_versions_link_to_it(api, project, clf, cancer_frame,
                                                           skops_bytes):
    client = api("contributor")
    response = client.post("/api/v1/datasets/", {
        "project": project.pk, "name": "cancer-train", "target": "target",
        "file": _csv(cancer_frame)}, format="multipart")
    assert response.status_code == 201, response.json()
    dataset = Dataset.objects.get(pk=response.json()["id"])
    assert dataset.profile_status == "ready", dataset.profile_reason
    assert dataset.rows == len(cancer_frame)
    radius = dataset.profile["features"]["mean radius"]
    assert sum(radius["counts"]) == len(cancer_frame)
    assert radius["min"] == pytest.approx(cancer_frame["mean radius"].min())
    detail = client.get(f"/api/v1/datasets/{dataset.pk}/").json()
    assert detail["profile"]["rows"] == len(cancer_frame)

    version = client.upload(clf.pk, skops_bytes, metadata(dataset="cancer-train")).json()
    assert version["dataset"]["sha256"] == dataset.sha256
    graph = client.get(f"/api/v1/versions/{version['id']}/lineage/").json()
    assert {"source": f"dataset:{dataset.pk}", "target": f"version:{version['id']}",
            "kind": "trained_on"} in graph["edges"]


def test_parquet_dataset(api, project, cancer_frame):
    buffer = io.BytesIO()
    cancer_frame.to_parquet(buffer)
    buffer.seek(0)
    buffer.name = "train.parquet"
    response = api("contributor").post("/api/v1/datasets/", {
        "project": project.pk, "name": "cancer-parquet", "file": buffer}, format="multipart")
    assert response.status_code == 201
    assert Dataset.objects.get(pk=response.json()["id"]).format == "parquet"


def test_bad_dataset_uploads(api, project, cancer_frame, artifact_root):
    client = api("contributor")
    binary = io.BytesIO(b"\x00\x01\x02 binary junk")
    binary.name = "junk.bin"
    response = client.post("/api/v1/datasets/", {"project": project.pk, "name": "junk",
                                                 "file": binary}, format="multipart")
    assert response.status_code == 400 and response.json()["code"] == "unsupported_format"
    assert stored_files(artifact_root) == []

    ok = client.post("/api/v1/datasets/", {"project": project.pk, "name": "a",
                                           "file": _csv(cancer_frame)}, format="multipart")
    assert ok.status_code == 201
    dup = client.post("/api/v1/datasets/", {"project": project.pk, "name": "b",
                                            "file": _csv(cancer_frame)}, format="multipart")
    assert dup.status_code == 409 and dup.json()["code"] == "duplicate_dataset"
    assert len(stored_files(artifact_root)) == 1

    missing_target = client.post("/api/v1/datasets/", {
        "project": project.pk, "name": "c", "target": "label",
        "file": _csv(cancer_frame.head(50))}, format="multipart")
    dataset = Dataset.objects.get(pk=missing_target.json()["id"])
    assert dataset.profile_status == "failed" and "label" in dataset.profile_reason

    assert api("viewer").post("/api/v1/datasets/", {
        "project": project.pk, "name": "d", "file": _csv(cancer_frame.head(10))},
        format="multipart").status_code == 403
    json_body = client.post("/api/v1/datasets/", {"project": project.pk, "name": "e"},
                            format="json")
    assert json_body.status_code == 415


def test_openapi_schema_and_offline_docs(api):
    client = api("viewer")
    schema = client.get("/api/schema/?format=json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in ("/api/v1/auth/token/", "/api/v1/models/{id}/versions/",
                 "/api/v1/versions/{id}/lineage/", "/api/v1/versions/{id}/artifact/",
                 "/api/v1/datasets/", "/api/v1/models/{id}/aliases/{alias}/"):
        assert path in paths, path
    docs = client.client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"drf_spectacular_sidecar/swagger-ui-dist" in docs.content
    assert b"cdn" not in docs.content.lower()


def test_audit_trail_is_a_verifiable_chain(api, clf, skops_bytes):
    from django.core.management import CommandError, call_command

    api("contributor").upload(clf.pk, skops_bytes, metadata())
    call_command("verify_audit_chain")
    events = api("viewer").get(f"/api/v1/audit-events/?project={clf.project_id}").json()
    actions = {e["action"] for e in events["results"]}
    assert {"project.create", "model.create", "version.create", "version.validate"} <= actions
    # Tampering with a past event (bypassing the model's append-only guard, and PostgreSQL's
    # trigger as the table's owner could) breaks the chain.
    from tests.integration.test_audit_chain import as_table_owner

    first = AuditEvent.objects.order_by("id").first()
    with as_table_owner():
        AuditEvent.objects.filter(pk=first.pk).update(object_repr="something else")
    with pytest.raises(CommandError, match="audit chain broken"):
        call_command("verify_audit_chain")


def test_openapi_schema_is_valid_without_warnings(tmp_path):
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yaml"))
    assert "/api/v1/versions/{id}/lineage/" in (tmp_path / "s.yaml").read_text()
