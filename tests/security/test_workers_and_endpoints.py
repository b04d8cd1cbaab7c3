"""The hostile owner of another project against the machines that run the portal: pickles,
environment settings that name machine resources, and another project's model server.

Each attack asserts that it is refused and that nothing ran: no marker file written, no
secret seen, no connection made, the victim's endpoint still serving its own version.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import socket
import urllib.request

import pytest

from ops.backends import get_backend
from ops.backends.base import BackendError
from portal.registry import services as registry
from portal.registry.models import ModelVersion
from portal.releases import deployments
from portal.releases import services as releases
from portal.releases.models import Deployment, EndpointSlot
from tests.integration.local_fixtures import free_port, plan
from tests.portal_fixtures import allow_unsafe, metadata, random_classifier_bytes, settled

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


class Probe:
    """A pickle that, when loaded, tries what an attacker would: read the worker's secrets,
    write a file outside the store, reach the database over TCP, start a program."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        code = f"""
import json, os
seen = {{"uid": os.getuid(),
         "secrets": sorted(k for k in os.environ if k in ("DATABASE_URL", "DJANGO_SECRET_KEY",
                           "MODELGATE_PREDICTION_ID_SECRET", "CELERY_BROKER_URL"))}}
try:
    open({self.marker!r}, "w").write("ran")
    seen["file"] = "written"
except Exception as e:
    seen["file"] = type(e).__name__
try:
    import socket
    socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
    seen["network"] = "reached the database"
except Exception as e:
    seen["network"] = type(e).__name__
try:
    import subprocess
    subprocess.run(["/bin/true"], check=True)
    seen["spawn"] = "ran a program"
except Exception as e:
    seen["spawn"] = type(e).__name__
raise RuntimeError("PROBE" + json.dumps(seen))
"""
        return (exec, (code,))


@pytest.fixture
def victim(users, project, clf, settings):
    """Project A (clinical-ml) serving v1 of its classifier on the local machine."""
    low = free_port()
    settings.MODELGATE_TARGETS = {"local": {"backend": "local", "ports": f"{low}-{low + 40}"}}
    production = releases.create_environment(users["owner"], project, name="production")
    version = registry.validate_version(registry.register_version(
        users["contributor"], clf, io.BytesIO(random_classifier_bytes(1)), metadata()).pk)
    request = releases.request_approval(users["contributor"], version, production)
    releases.review(users["approver"], request, "approve", "first release")
    deployment = settled(Deployment.objects.get(request=request))
    assert deployment.status == "succeeded", [e.reason for e in deployment.events.all()]
    yield {"env": production, "version": version, "deployment": deployment,
           "url": deployments.backend_for(deployment).url(deployment.endpoint)}
    deployments.backend_for(deployment).delete(deployment.endpoint)


def served_version(url: str, endpoint: str = "tumor-classifier") -> int:
    with urllib.request.urlopen(f"{url}/v2/models/{endpoint}", timeout=5) as answer:
        variants = json.loads(answer.read())["parameters"]["variants"]
    return [v["version_id"] for v in variants][0]


# 1. Unsafe formats are the operator's decision ----------------------------------------------

def test_an_owner_cannot_open_their_project_to_pickles(api, other_project, settings):
    response = api("outsider").patch(f"/api/v1/projects/{other_project.pk}/",
                                     {"allow_unsafe_artifacts": True}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "unsafe_disabled"
    settings.MODELGATE_ALLOW_UNSAFE_ARTIFACTS = True  # the operator enables them ...
    response = api("outsider").patch(f"/api/v1/projects/{other_project.pk}/",
                                     {"allow_unsafe_artifacts": True}, format="json")
    assert response.status_code == 403 and response.json()["code"] == "staff_required"
    other_project.refresh_from_db()
    assert other_project.allow_unsafe_artifacts is False


def test_a_project_allowed_before_the_operator_turned_pickles_off_accepts_none(
        api, project, clf, pickle_bytes, settings, users):
    allow_unsafe(settings, users["staff"], project)
    settings.MODELGATE_ALLOW_UNSAFE_ARTIFACTS = False
    response = api("contributor").upload(clf.pk, pickle_bytes, metadata(), name="m.joblib")
    assert response.status_code == 400 and response.json()["code"] == "unsafe_artifact"


def test_a_pickle_runs_only_in_the_sandbox_and_can_do_nothing_there(
        api, project, clf, settings, users, tmp_path, monkeypatch):
    """With pickles allowed, a hostile one is loaded once, in the sandbox: it sees no
    secret, writes no file, reaches no database, starts no program; the version is invalid
    and nothing it would have run happened in the worker."""
    monkeypatch.setenv("DJANGO_SECRET_KEY", "the-worker-holds-this")
    monkeypatch.setenv("MODELGATE_PREDICTION_ID_SECRET", "and-this")
    allow_unsafe(settings, users["staff"], project)
    marker = tmp_path / "pwned"
    os.chmod(tmp_path, 0o777)  # writable by anyone: only the sandbox's limits stop the write
    response = api("contributor").upload(clf.pk, pickle.dumps(Probe(str(marker))), metadata(),
                                         name="m.joblib")
    assert response.status_code == 201
    version = ModelVersion.objects.get(pk=response.json()["id"])
    assert version.status == "invalid"
    assert not marker.exists()
    seen = json.loads(version.status_reason.split("PROBE", 1)[1])
    assert seen["secrets"] == []
    assert seen["file"] != "written"
    assert seen["network"] != "reached the database"
    assert seen["spawn"] != "ran a program"
    if os.geteuid() == 0:
        assert seen["uid"] != 0  # dropped to nobody
    assert not version.converted_uri


def test_an_accepted_pickle_is_served_from_its_skops_conversion(
        project, clf, pickle_bytes, settings, users):
    allow_unsafe(settings, users["staff"], project)
    version = registry.validate_version(registry.register_version(
        users["contributor"], clf, io.BytesIO(pickle_bytes), metadata()).pk)
    assert version.status == "ready", version.status_reason
    variant = deployments.variant_of(version, "candidate")
    assert variant.artifact_uri == version.converted_uri != version.artifact_uri
    assert variant.sha256 == version.converted_sha256
    assert variant.trusted_unsafe is False
    with registry.verified_artifact(version) as path:
        assert path.read_bytes()[:2] == b"PK"  # a skops archive, never the pickle


# 2. Platform connections belong to operators -------------------------------------------------

MACHINE_SETTINGS = [
    ("local", {"python": "/bin/echo"}),
    ("local", {"state_dir": "/etc"}),
    ("local", {"port": 9200}),
    ("local", {"ports": {"tumor-classifier": 9200}}),
    ("local", {"host": "0.0.0.0"}),
    ("kubernetes", {"kubeconfig": "/srv/uploads/datasets/evil.yaml"}),
    ("kubernetes", {"host": "http://127.0.0.1:6443"}),
    ("kubernetes", {"in_cluster": True}),
    ("kubernetes", {"image": "attacker/server:latest"}),
    ("kubernetes", {"namespace": "kube-system"}),
    ("kubernetes", {"env": {"LD_PRELOAD": "/tmp/x.so"}}),
    ("kubernetes", {"env": {"MODELGATE_SERVER_ALLOW_PICKLE": "true"}}),
    ("kubernetes", {"resources": {"requests": {"cpu": "64"}}}),
    ("kubernetes", {"total_replicas": 50}),
    ("sagemaker", {"initial_instance_count": 10}),
    ("sagemaker", {"endpoint_url": "http://127.0.0.1:5432"}),
    ("sagemaker", {"role_arn": "arn:aws:iam::1:role/admin"}),
    ("sagemaker", {"instance_type": "ml.p4d.24xlarge"}),
    ("sagemaker", {"aws_secret_access_key": "x"}),
]


@pytest.mark.parametrize("backend, values", MACHINE_SETTINGS,
                         ids=[f"{b}-{next(iter(v))}" for b, v in MACHINE_SETTINGS])
def test_machine_level_settings_are_refused(api, other_project, settings, backend, values):
    settings.MODELGATE_TARGETS = {
        "local": {"backend": "local", "ports": "9100-9199"},
        "cluster": {"backend": "kubernetes", "image": "modelgate/server:1", "in_cluster": True,
                    "allowed": {"namespace": ["team-a", "team-b"]}},
        "aws": {"backend": "sagemaker", "region": "eu-west-1", "bucket": "b", "image_uri": "i",
                "role_arn": "arn:aws:iam::1:role/modelgate", "instance_type": "ml.m5.large"}}
    payload = {"project": other_project.pk, "name": "prod", "backend": backend,
               "settings": values}
    response = api("outsider").post("/api/v1/environments/", payload, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == "invalid_settings"
    assert not other_project.environments.exists()


def test_an_environment_chooses_what_its_target_allows(api, other_project, settings):
    settings.MODELGATE_TARGETS = {
        "cluster": {"backend": "kubernetes", "image": "modelgate/server:1", "in_cluster": True,
                    "allowed": {"namespace": ["team-a", "team-b"]}}}
    payload = {"project": other_project.pk, "name": "prod", "target": "cluster",
               "settings": {"namespace": "team-b", "env": {"MODELGATE_THREADS": "4"}}}
    response = api("outsider").post("/api/v1/environments/", payload, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["backend"] == "kubernetes" and response.json()["target"] == "cluster"
    unknown = api("outsider").post("/api/v1/environments/",
                                   {**payload, "name": "x", "target": "elsewhere"}, format="json")
    assert unknown.status_code == 400 and unknown.json()["code"] == "unknown_target"


# 3. Endpoints are owned -----------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_ports_are_allocated_and_unique_across_projects(victim, users, other_project, settings):
    from portal.registry.services import create_model

    theirs = create_model(users["outsider"], other_project, name="tumor-classifier",
                          task="classification")
    environment = releases.create_environment(users["outsider"], other_project, name="prod")
    slot = victim["deployment"].environment.endpoint_slots.get()
    from portal.releases.targets import allocate_port, default_target

    port = allocate_port(environment, theirs, default_target("local"))
    assert port != slot.port
    assert EndpointSlot.objects.filter(port=slot.port).count() == 1
    assert served_version(victim["url"]) == victim["version"].pk


@pytest.mark.django_db(transaction=True)
def test_another_environment_cannot_act_on_the_victims_endpoint(victim, settings):
    """Even a backend built with the victim's folder and port (a misconfigured target, a
    bug) refuses to stop or replace a server it does not own."""
    deployment = victim["deployment"]
    mine = deployments.backend_for(deployment)
    intruder = get_backend("local", {"state_dir": str(mine.state_dir),
                                     "ports": dict(mine.ports), "owner": "env-999"})
    current = mine.observe(deployment.endpoint)
    with pytest.raises(BackendError, match="belongs to another environment"):
        intruder.apply(plan(deployment.endpoint, 99, *deployment_plan_variants(deployment)))
    with pytest.raises(BackendError, match="belongs to another environment"):
        intruder.delete(deployment.endpoint)
    assert mine.observe(deployment.endpoint).generation == current.generation
    assert served_version(victim["url"]) == victim["version"].pk


def deployment_plan_variants(deployment):
    return [deployments.variant_of(deployment.candidate, "stable")]


def test_a_server_on_a_port_that_is_not_the_endpoints_is_never_taken_for_it(tmp_path,
                                                                           artifact_variant):
    """A process already listening on the endpoint's port (another project's server, any
    program) is neither stopped nor reported as the endpoint's server."""
    port = free_port()
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    try:
        backend = get_backend("local", {"state_dir": str(tmp_path / "s"), "ports": {"e": port},
                                        "owner": "env-1", "ready_timeout": 5})
        with pytest.raises(BackendError, match="in use by another process"):
            backend.apply(plan("e", 1, artifact_variant("stable", 1)))
        assert not backend.observe("e").ready
    finally:
        squatter.close()


def test_a_recycled_pid_is_not_mistaken_for_the_endpoints_server(tmp_path):
    folder = tmp_path / "s" / "e"
    folder.mkdir(parents=True)
    (folder / "plan.json").write_text("{}")
    (folder / "server.pid").write_text(str(os.getpid()))  # alive, but not a model server
    backend = get_backend("local", {"state_dir": str(tmp_path / "s"), "ports": {"e": 1},
                                    "owner": "env-1"})
    assert backend._pid("e") is None
    backend.delete("e")  # must not signal this test's own process
    assert not (folder / "server.pid").exists()


def test_the_shipped_targets_parse_and_a_bad_one_stops_start_up(settings):
    """The Kubernetes config's targets are what the portal accepts; a target that tries to
    set what the portal owns (the prediction key, a folder) is a start-up error."""
    from pathlib import Path

    import yaml
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    from portal.releases.targets import parse_targets, project_schema

    config = yaml.safe_load((Path(__file__).parents[2] / "deploy/kubernetes/config.yaml")
                            .read_text())
    shipped = parse_targets(json.loads(config["data"]["MODELGATE_TARGETS"]))
    assert project_schema(shipped["cluster"])["properties"]["namespace"]["enum"] == ["models"]
    settings.MODELGATE_TARGETS = {"local": {"backend": "local", "state_dir": "/etc"}}
    with pytest.raises(SystemCheckError, match="set by the portal"):
        call_command("check")


def test_settings_stored_before_targets_never_reach_a_backend(settings):
    """Rows written before targets existed keep working on the default target, and what a
    project may no longer set (a kubeconfig, a namespace the target does not allow) is
    dropped, not handed to the backend."""
    from types import SimpleNamespace

    from portal.releases.targets import backend_options

    settings.MODELGATE_TARGETS = {
        "cluster": {"backend": "kubernetes", "image": "modelgate/server:1", "in_cluster": True,
                    "allowed": {"namespace": ["team-a"]}}}
    legacy = SimpleNamespace(pk=7, name="prod", backend="kubernetes", target="", settings={
        "kubeconfig": "/srv/evil.yaml", "host": "http://127.0.0.1:1", "namespace": "kube-system",
        "env": {"MODELGATE_THREADS": "2"},
        "monitoring_labels": {"project": "another-team"}},  # whose series these would be
        project=SimpleNamespace(slug="clinical-ml"))
    options = backend_options(legacy, SimpleNamespace(name="churn"), prediction_key="k")
    assert "kubeconfig" not in options and "host" not in options
    assert "namespace" not in options  # not allowed any more: the target's own applies
    assert options["env"] == {"MODELGATE_THREADS": "2"}
    assert options["in_cluster"] is True and options["owner"] == "env-7"
    assert options["monitoring_labels"] == {"project": "clinical-ml", "environment": "prod"}
