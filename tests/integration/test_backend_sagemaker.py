"""The SageMaker backend against a moto server over HTTP.

moto lacks ``UpdateEndpoint``: every test that changes the *set* of variants (canary,
promote, rollback) goes through the backend's delete-and-recreate fallback, enabled by
``allow_recreate=True`` in the fixtures' settings, and asserts that it did. On AWS the
backend calls ``UpdateEndpoint`` instead. Weight shifts use
``UpdateEndpointWeightsAndCapacities``, which moto implements. See
``tests/integration/sagemaker_fixtures.py`` for the other gaps.
"""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import time
from dataclasses import replace

import numpy as np
import pytest
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer
from sklearn.linear_model import LogisticRegression

from ops.artifacts import dump_skops
from ops.backends.base import BackendError, BackendUnavailable, StalePlan
from ops.backends.sagemaker import SageMakerBackend, _sagemaker_name, _translate
from ops.plan import ServingPlan, Variant
from ops.serving.ids import KEY_ENV
from tests.integration.sagemaker_fixtures import BUCKET, sagemaker_settings

ENDPOINT = "churn-prod"
PREDICTION_KEY = "e1m2:" + "ab" * 16


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Two real skops artifacts (versions 1 and 2) and their sha256, by version id."""
    folder = tmp_path_factory.mktemp("artifacts")
    rng = np.random.default_rng(7)
    x = rng.normal(size=(60, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    found = {}
    for version, c in ((1, 1.0), (2, 0.1)):
        data = dump_skops(LogisticRegression(C=c).fit(x, y))
        path = folder / f"model-v{version}.skops"
        path.write_bytes(data)
        found[version] = (path, hashlib.sha256(data).hexdigest())
    return found


@pytest.fixture
def backend(sagemaker_backend_factory) -> SageMakerBackend:
    return sagemaker_backend_factory()


@pytest.fixture
def sagemaker(moto_server):
    return moto_server.client("sagemaker")


@pytest.fixture
def s3(moto_server):
    return moto_server.client("s3")


def variant(artifacts, name: str, version: int, weight: float, **fields) -> Variant:
    path, sha = artifacts[version]
    return Variant(name=name, version_id=version, artifact_uri=f"file://{path}", sha256=sha,
                   weight=weight, **fields)


def stable_only(artifacts, generation: int, endpoint: str = ENDPOINT) -> ServingPlan:
    return ServingPlan(endpoint, (variant(artifacts, "stable", 1, 1.0),), generation=generation)


def canary(artifacts, generation: int, stable: float, candidate: float) -> ServingPlan:
    return ServingPlan(ENDPOINT, (variant(artifacts, "stable", 1, stable),
                                  variant(artifacts, "candidate", 2, candidate)),
                       generation=generation)


def candidate_only(artifacts, generation: int) -> ServingPlan:
    return ServingPlan(ENDPOINT, (variant(artifacts, "candidate", 2, 1.0),),
                       generation=generation)


def config_names(sagemaker) -> list[str]:
    return sorted(c["EndpointConfigName"]
                  for c in sagemaker.list_endpoint_configs()["EndpointConfigs"])


def model_names(sagemaker) -> list[str]:
    return sorted(m["ModelName"] for m in sagemaker.list_models()["Models"])


def endpoint_weights(sagemaker, name: str = ENDPOINT) -> dict[str, float]:
    described = sagemaker.describe_endpoint(EndpointName=name)
    return {pv["VariantName"]: pv["DesiredWeight"] for pv in described["ProductionVariants"]}


def bucket_keys(s3) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def recreated(observed) -> bool:
    return any(a.startswith("recreate_endpoint") for a in observed.extra["actions"])


# -- creating -----------------------------------------------------------------------------


def test_stable_only_plan_creates_model_config_and_endpoint(backend, artifacts, sagemaker,
                                                            s3, tmp_path):
    observed = backend.apply(stable_only(artifacts, generation=1))

    assert observed.exists and observed.ready and observed.generation == 1
    assert observed.weights() == {"stable": 1.0}
    assert [(v.name, v.version_id, v.replicas) for v in observed.variants] == [("stable", 1, 1)]
    assert config_names(sagemaker) == [f"{ENDPOINT}-g1"]
    [model] = model_names(sagemaker)
    assert model.startswith(f"{ENDPOINT}-v1-")
    described = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == f"{ENDPOINT}-g1"
    config = sagemaker.describe_endpoint_config(EndpointConfigName=f"{ENDPOINT}-g1")
    assert config["ProductionVariants"] == [{
        "VariantName": "stable", "ModelName": model, "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large", "InitialVariantWeight": 1.0}]
    tags = sagemaker.list_tags(ResourceArn=described["EndpointArn"])["Tags"]
    assert {"Key": "modelgate:generation", "Value": "1"} in tags

    # The container finds the artifact and a plan serving it under /opt/ml/model.
    container = sagemaker.describe_model(ModelName=model)["PrimaryContainer"]
    assert container["Image"] == backend.image_uri
    bucket, key = container["ModelDataUrl"].removeprefix("s3://").split("/", 1)
    assert bucket == BUCKET and key.endswith("/model.tar.gz")
    tarball = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == ["artifact.skops", "plan.json"]
        tar.extractall(tmp_path / "opt-ml-model", filter="data")
    served = ServingPlan.from_json((tmp_path / "opt-ml-model" / "plan.json").read_text())
    [inner] = served.variants
    assert (inner.name, inner.version_id, inner.weight) == ("stable", 1, 1.0)
    assert inner.sha256 == artifacts[1][1]
    assert inner.artifact_uri == "artifact.skops"  # relative to the plan's folder

    from ops.serving.variants import read_artifact  # how the model server resolves it

    data = read_artifact(inner.artifact_uri, tmp_path / "opt-ml-model")
    assert hashlib.sha256(data).hexdigest() == artifacts[1][1]


def test_s3_artifacts_are_copied_into_the_tarball(sagemaker_backend_factory, artifacts, s3,
                                                  sagemaker):
    backend = sagemaker_backend_factory(ready_timeout=5, poll_interval=0.1)
    path, sha = artifacts[2]
    s3.put_object(Bucket=BUCKET, Key="registry/models/2/model.skops", Body=path.read_bytes())
    stored = Variant(name="stable", version_id=2, sha256=sha, weight=1.0,
                     artifact_uri=f"s3://{BUCKET}/registry/models/2/model.skops")

    observed = backend.apply(ServingPlan(ENDPOINT, (stored,)))

    assert observed.ready and [v.version_id for v in observed.variants] == [2]
    [model] = model_names(sagemaker)
    url = sagemaker.describe_model(ModelName=model)["PrimaryContainer"]["ModelDataUrl"]
    tarball = s3.get_object(Bucket=BUCKET, Key=url.split("/", 3)[3])["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        packaged = tar.extractfile("artifact.skops").read()
    assert hashlib.sha256(packaged).hexdigest() == sha

    missing = replace(stored, name="candidate", weight=0.5,
                      artifact_uri=f"s3://{BUCKET}/registry/models/3/gone.skops")
    with pytest.raises(BackendError, match="cannot read"):
        backend.apply(ServingPlan(ENDPOINT, (replace(stored, weight=0.5), missing),
                                  generation=2))


def test_observe_unknown_endpoint_says_it_does_not_exist(backend):
    observed = backend.observe("nobody-home")
    assert not observed.exists and observed.variants == ()


def test_same_plan_twice_changes_nothing(backend, artifacts, sagemaker, s3):
    backend.apply(stable_only(artifacts, generation=1))
    before = (config_names(sagemaker), model_names(sagemaker), bucket_keys(s3))

    again = backend.apply(stable_only(artifacts, generation=1))

    assert again.extra["actions"] == []
    assert (config_names(sagemaker), model_names(sagemaker), bucket_keys(s3)) == before
    assert again.ready and again.weights() == {"stable": 1.0}


def test_same_canary_plan_twice_changes_nothing(backend, artifacts, sagemaker):
    backend.apply(stable_only(artifacts, generation=1))
    backend.apply(canary(artifacts, 2, 0.9, 0.1))
    configs = config_names(sagemaker)

    again = backend.apply(canary(artifacts, 2, 0.9, 0.1))

    assert again.extra["actions"] == []
    assert config_names(sagemaker) == configs
    assert again.weights() == {"stable": 0.9, "candidate": 0.1}


def served_environments(backend, sagemaker) -> dict[str, dict]:
    """The container environment of each variant's Model, as DescribeModel shows it."""
    models = backend.observe(ENDPOINT).extra["models"]
    return {name: sagemaker.describe_model(ModelName=model)["PrimaryContainer"].get(
        "Environment", {}) for name, model in models.items()}


def test_the_prediction_key_is_in_every_models_container_environment(
        sagemaker_backend_factory, artifacts, sagemaker):
    backend = sagemaker_backend_factory(prediction_key=PREDICTION_KEY)
    backend.apply(stable_only(artifacts, generation=1))

    backend.apply(canary(artifacts, 2, 0.9, 0.1))

    assert len(model_names(sagemaker)) == 2
    assert served_environments(backend, sagemaker) == {
        "stable": {KEY_ENV: PREDICTION_KEY}, "candidate": {KEY_ENV: PREDICTION_KEY}}


def test_without_a_prediction_key_the_containers_get_none(backend, artifacts, sagemaker):
    backend.apply(stable_only(artifacts, generation=1))

    assert KEY_ENV not in served_environments(backend, sagemaker)["stable"]


def test_a_model_made_without_the_key_is_not_reused_once_there_is_one(
        sagemaker_backend_factory, artifacts, sagemaker):
    # An endpoint deployed before its servers had a key (or under another key): a Model
    # never changes after creation, so the version needs a new Model holding the key.
    sagemaker_backend_factory().apply(stable_only(artifacts, generation=1))
    backend = sagemaker_backend_factory(prediction_key=PREDICTION_KEY)

    observed = backend.apply(stable_only(artifacts, generation=2))

    assert observed.ready and observed.weights() == {"stable": 1.0}
    assert served_environments(backend, sagemaker) == {"stable": {KEY_ENV: PREDICTION_KEY}}
    rotated = sagemaker_backend_factory(prediction_key="e1m3:" + "cd" * 16)
    rotated.apply(stable_only(artifacts, generation=3))
    assert served_environments(rotated, sagemaker) == {"stable": {KEY_ENV: "e1m3:" + "cd" * 16}}


# -- moving traffic ---------------------------------------------------------------------


def test_canary_adds_the_candidate_through_the_recreate_fallback(backend, artifacts,
                                                                 sagemaker):
    backend.apply(stable_only(artifacts, generation=1))

    observed = backend.apply(canary(artifacts, 2, 0.9, 0.1))

    # moto has no UpdateEndpoint: the fixture's allow_recreate=True made the backend delete
    # and recreate the endpoint. On AWS this step is an UpdateEndpoint call.
    assert recreated(observed), observed.extra["actions"]
    assert observed.ready and observed.generation == 2
    assert observed.weights() == {"stable": 0.9, "candidate": 0.1}
    assert {v.name: v.version_id for v in observed.variants} == {"stable": 1, "candidate": 2}
    assert config_names(sagemaker) == [f"{ENDPOINT}-g1", f"{ENDPOINT}-g2"]
    assert sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] \
        == f"{ENDPOINT}-g2"
    assert len(model_names(sagemaker)) == 2


def test_changing_variants_without_allow_recreate_is_refused_on_the_emulator(
        sagemaker_backend_factory, artifacts, sagemaker):
    backend = sagemaker_backend_factory(allow_recreate=False)
    backend.apply(stable_only(artifacts, generation=1))

    with pytest.raises(BackendError, match="UpdateEndpoint"):
        backend.apply(canary(artifacts, 2, 0.9, 0.1))

    observed = backend.observe(ENDPOINT)  # still serving the stable plan, untouched
    assert observed.ready and observed.generation == 1
    assert observed.weights() == {"stable": 1.0}


def test_weight_shift_updates_weights_in_place(backend, artifacts, sagemaker):
    backend.apply(stable_only(artifacts, generation=1))
    backend.apply(canary(artifacts, 2, 0.9, 0.1))
    configs, models = config_names(sagemaker), model_names(sagemaker)

    observed = backend.apply(canary(artifacts, 3, 0.75, 0.25))

    assert observed.extra["actions"][0].startswith("update_endpoint_weights_and_capacities")
    assert not recreated(observed)
    assert endpoint_weights(sagemaker) == {"stable": 0.75, "candidate": 0.25}
    assert observed.weights() == {"stable": 0.75, "candidate": 0.25}
    assert observed.generation == 3  # from the endpoint's tag; the config is still g2
    assert (config_names(sagemaker), model_names(sagemaker)) == (configs, models)


def test_a_new_version_or_instance_type_under_the_same_names_gets_a_new_config(
        sagemaker_backend_factory, artifacts, sagemaker):
    backend = sagemaker_backend_factory()
    backend.apply(canary(artifacts, 1, 0.9, 0.1))

    swapped = ServingPlan(ENDPOINT, (variant(artifacts, "stable", 2, 0.9),
                                     variant(artifacts, "candidate", 1, 0.1)), generation=2)
    observed = backend.apply(swapped)
    assert recreated(observed)
    assert {v.name: v.version_id for v in observed.variants} == {"stable": 2, "candidate": 1}

    bigger = sagemaker_backend_factory(instance_type="ml.c5.xlarge")
    observed = bigger.apply(replace(swapped, generation=3))
    assert recreated(observed)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=f"{ENDPOINT}-g3")
    assert {pv["InstanceType"] for pv in config["ProductionVariants"]} == {"ml.c5.xlarge"}


def test_promote_leaves_the_candidate_only(backend, artifacts, sagemaker):
    backend.apply(stable_only(artifacts, generation=1))
    backend.apply(canary(artifacts, 2, 0.9, 0.1))
    backend.apply(canary(artifacts, 3, 0.5, 0.5))

    observed = backend.apply(candidate_only(artifacts, generation=4))

    assert recreated(observed)
    assert observed.weights() == {"candidate": 1.0}
    assert [(v.name, v.version_id) for v in observed.variants] == [("candidate", 2)]
    assert endpoint_weights(sagemaker) == {"candidate": 1.0}
    assert sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] \
        == f"{ENDPOINT}-g4"


def test_rollback_restores_stable_traffic_and_removes_the_candidate(backend, artifacts,
                                                                    sagemaker):
    backend.apply(stable_only(artifacts, generation=1))
    backend.apply(canary(artifacts, 2, 0.9, 0.1))
    backend.apply(canary(artifacts, 3, 0.75, 0.25))

    observed = backend.apply(stable_only(artifacts, generation=4))

    assert recreated(observed)
    assert observed.ready and observed.generation == 4
    assert observed.weights() == {"stable": 1.0}
    assert [(v.name, v.version_id) for v in observed.variants] == [("stable", 1)]
    assert endpoint_weights(sagemaker) == {"stable": 1.0}
    config = sagemaker.describe_endpoint_config(EndpointConfigName=f"{ENDPOINT}-g4")
    assert [pv["VariantName"] for pv in config["ProductionVariants"]] == ["stable"]


# -- refusing -----------------------------------------------------------------------------


def test_sha256_mismatch_is_refused_before_anything_is_created(backend, artifacts, sagemaker,
                                                               s3):
    # version 1's file with version 2's checksum: not the approved artifact
    tampered = ServingPlan(ENDPOINT, (replace(variant(artifacts, "stable", 1, 1.0),
                                              sha256=artifacts[2][1]),))

    with pytest.raises(BackendError, match="sha256"):
        backend.apply(tampered)

    assert model_names(sagemaker) == [] and config_names(sagemaker) == []
    assert bucket_keys(s3) == []
    assert not backend.observe(ENDPOINT).exists


def test_sha256_mismatch_of_a_candidate_leaves_the_stable_endpoint_alone(backend, artifacts,
                                                                         sagemaker):
    backend.apply(stable_only(artifacts, generation=1))
    models = model_names(sagemaker)
    stable = variant(artifacts, "stable", 1, 0.9)
    bad_candidate = replace(variant(artifacts, "candidate", 2, 0.1), sha256="0" * 64)

    with pytest.raises(BackendError, match="sha256"):
        backend.apply(ServingPlan(ENDPOINT, (stable, bad_candidate), generation=2))

    assert model_names(sagemaker) == models
    assert config_names(sagemaker) == [f"{ENDPOINT}-g1"]
    assert backend.observe(ENDPOINT).weights() == {"stable": 1.0}


def test_a_generation_the_endpoint_serves_cannot_mean_another_plan(backend, artifacts):
    backend.apply(stable_only(artifacts, generation=1))
    backend.apply(canary(artifacts, 2, 0.9, 0.1))

    with pytest.raises(BackendError, match="new generation"):
        backend.apply(stable_only(artifacts, generation=2))

    assert backend.observe(ENDPOINT).weights() == {"stable": 0.9, "candidate": 0.1}


def test_an_unused_config_of_a_reused_generation_is_replaced(
        sagemaker_backend_factory, artifacts, sagemaker):
    backend = sagemaker_backend_factory()
    backend.apply(stable_only(artifacts, generation=1))
    # g2's config is made, then the switch fails: the endpoint still serves generation 1.
    with pytest.raises(BackendError, match="UpdateEndpoint"):
        sagemaker_backend_factory(allow_recreate=False).apply(canary(artifacts, 2, 0.9, 0.1))

    observed = backend.apply(canary(artifacts, 2, 0.5, 0.5))

    assert f"delete_endpoint_config {ENDPOINT}-g2 (stale, other variants)" \
        in observed.extra["actions"]
    assert observed.weights() == {"stable": 0.5, "candidate": 0.5}
    config = sagemaker.describe_endpoint_config(EndpointConfigName=f"{ENDPOINT}-g2")
    assert [pv["InitialVariantWeight"] for pv in config["ProductionVariants"]] == [0.5, 0.5]


def test_a_newer_plan_recorded_while_the_models_were_made_is_not_replaced(
        backend, artifacts, monkeypatch):
    backend.apply(stable_only(artifacts, generation=1))
    ensure_config = backend._ensure_config

    def and_meanwhile(*args, **kwargs):
        ensure_config(*args, **kwargs)
        monkeypatch.setattr(backend, "_ensure_config", ensure_config)
        backend.apply(stable_only(artifacts, generation=3))  # another worker's newer plan

    monkeypatch.setattr(backend, "_ensure_config", and_meanwhile)

    with pytest.raises(StalePlan, match="generation 2 .* older than generation 3"):
        backend.apply(canary(artifacts, 2, 0.9, 0.1))

    observed = backend.observe(ENDPOINT)
    assert observed.generation == 3 and observed.weights() == {"stable": 1.0}


def test_an_update_begun_while_the_models_were_made_is_waited_out_not_a_refusal(
        backend, artifacts, monkeypatch):
    backend.apply(stable_only(artifacts, generation=1))
    describe, described = backend._describe_fenced, []

    def another_update_began(plan, name):
        endpoint = describe(plan, name)
        described.append(name)
        return endpoint if len(described) == 1 else {**endpoint, "EndpointStatus": "Updating"}

    monkeypatch.setattr(backend, "_describe_fenced", another_update_began)

    with pytest.raises(BackendUnavailable, match="once it is InService"):
        backend.apply(canary(artifacts, 2, 0.9, 0.1))

    assert backend.observe(ENDPOINT).generation == 1


def still_updating(backend, monkeypatch, generation: int | None = None) -> None:
    """Make ``backend`` see its endpoint not InService (and recording ``generation``)."""
    observe = backend.observe
    monkeypatch.setattr(backend, "observe", lambda endpoint: replace(
        observe(endpoint), ready=False,
        **({"generation": generation} if generation is not None else {})))


def test_waiting_for_in_service_ends_once_a_newer_plan_is_recorded(
        sagemaker_backend_factory, artifacts, monkeypatch):
    backend = sagemaker_backend_factory(ready_timeout=30, poll_interval=0.05)
    backend.apply(stable_only(artifacts, generation=1))
    still_updating(backend, monkeypatch, generation=5)  # another worker's plan meanwhile

    started = time.monotonic()
    observed = backend.apply(stable_only(artifacts, generation=2))

    assert time.monotonic() - started < 5
    assert observed.generation == 5


def test_apply_without_waiting_returns_before_in_service(sagemaker_backend_factory, artifacts,
                                                          monkeypatch):
    backend = sagemaker_backend_factory(ready_timeout=30, poll_interval=0.05)
    backend.apply(stable_only(artifacts, generation=1))
    still_updating(backend, monkeypatch)

    started = time.monotonic()
    observed = backend.apply(canary(artifacts, 2, 0.9, 0.1), wait=False)

    assert time.monotonic() - started < 5
    assert not observed.ready and observed.generation == 2


def test_shadow_plans_are_refused(backend, artifacts):
    plan = ServingPlan(ENDPOINT, (variant(artifacts, "stable", 1, 1.0),
                                  variant(artifacts, "candidate", 2, 0.0)),
                       shadow="candidate")
    with pytest.raises(BackendError, match="shadow"):
        backend.apply(plan)


def test_credentials_in_settings_are_refused(moto_server):
    with pytest.raises(BackendError, match="process environment"):
        SageMakerBackend(**sagemaker_settings(moto_server.url, aws_secret_access_key="x"))


# -- deleting -----------------------------------------------------------------------------


def test_delete_removes_everything_made_for_the_endpoint_and_twice_is_harmless(
        backend, artifacts, sagemaker, s3):
    other = "churn-prod-eu"  # a name that starts like ENDPOINT must survive
    backend.apply(stable_only(artifacts, generation=1, endpoint=other))
    kept = (config_names(sagemaker), model_names(sagemaker), bucket_keys(s3))
    backend.apply(stable_only(artifacts, generation=1))
    backend.apply(canary(artifacts, 2, 0.9, 0.1))

    backend.delete(ENDPOINT)
    backend.delete(ENDPOINT)

    assert not backend.observe(ENDPOINT).exists
    assert (config_names(sagemaker), model_names(sagemaker), bucket_keys(s3)) == kept
    assert backend.observe(other).ready


def test_delete_of_an_unknown_endpoint_is_harmless(backend):
    backend.delete("never-created")
    assert backend.observe("never-created").exists is False


# -- names --------------------------------------------------------------------------------


def test_names_follow_sagemaker_rules_and_stay_distinct(backend, artifacts, sagemaker):
    awkward = "Churn_Model/prod." + "x" * 80
    observed = backend.apply(stable_only(artifacts, generation=7, endpoint=awkward))

    assert observed.ready and observed.generation == 7
    name = backend.endpoint_name(awkward)
    assert len(name) <= 63 and name == observed.extra["sagemaker_endpoint"]
    for resource in [name, *config_names(sagemaker), *model_names(sagemaker)]:
        assert len(resource) <= 63
        assert all(ch.isalnum() or ch == "-" for ch in resource)
        assert not resource.startswith("-") and not resource.endswith("-")
    assert _sagemaker_name("churn_v2", 63) != _sagemaker_name("churn-v2", 63)
    assert _sagemaker_name("churn-v2", 63) == "churn-v2"


# -- the API out of reach -----------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_api_is_unavailable(moto_server, artifacts):
    backend = SageMakerBackend(**sagemaker_settings(f"http://127.0.0.1:{_closed_port()}"))

    for call in (lambda: backend.apply(stable_only(artifacts, generation=1)),
                 lambda: backend.observe(ENDPOINT), lambda: backend.delete(ENDPOINT)):
        with pytest.raises(BackendUnavailable) as caught:
            call()
        assert caught.value.__cause__ is not None  # the botocore error, chained


def test_stopped_server_is_unavailable(moto_server, artifacts):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    backend = SageMakerBackend(**sagemaker_settings(f"http://{host}:{port}"))
    assert not backend.observe("stopped-soon").exists
    server.stop()

    with pytest.raises(BackendUnavailable, match="could not reach"):
        backend.apply(stable_only(artifacts, generation=1, endpoint="stopped-soon"))
    with pytest.raises(BackendUnavailable):
        backend.observe("stopped-soon")


def test_server_that_never_answers_is_unavailable(moto_server, artifacts):
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        backend = SageMakerBackend(**sagemaker_settings(url, read_timeout=0.5))

        with pytest.raises(BackendUnavailable) as caught:
            backend.observe(ENDPOINT)
    assert "timeout" in type(caught.value.__cause__).__name__.lower()


@pytest.mark.parametrize(("code", "status", "transient"), [
    ("ThrottlingException", 400, True),
    ("ServiceUnavailable", 503, True),
    ("InternalFailure", 500, True),
    ("SomethingNew", 502, True),
    ("ValidationException", 400, False),
    ("AccessDeniedException", 403, False),
    ("ResourceLimitExceeded", 400, False),
])
def test_client_errors_map_to_transient_or_permanent(code, status, transient):
    error = ClientError({"Error": {"Code": code, "Message": "m"},
                         "ResponseMetadata": {"HTTPStatusCode": status}}, "CreateEndpoint")
    expected = BackendUnavailable if transient else BackendError
    assert isinstance(_translate(error, "create_endpoint"), expected)


def test_a_version_keeps_one_model_across_generations(backend, artifacts, sagemaker):
    backend.apply(stable_only(artifacts, generation=1))
    backend.apply(canary(artifacts, 2, 0.9, 0.1))
    backend.apply(stable_only(artifacts, generation=3))
    # The stable version kept one Model through three generations: its tarball's plan
    # names no weight or generation that could go stale.
    assert sum(name.startswith(f"{ENDPOINT}-v1-") for name in model_names(sagemaker)) == 1


def test_two_environments_endpoints_of_one_name_are_apart_and_never_touch(
        sagemaker_backend_factory, artifacts, sagemaker):
    """SageMaker endpoint names are one namespace per account and region: two projects'
    models of one name get two endpoints (the owner is in the name), and an endpoint tagged
    for another owner is neither replaced, deleted nor read as this one's."""
    victim = sagemaker_backend_factory(owner="env-1")
    victim.apply(stable_only(artifacts, 1))
    name = victim.endpoint_name(ENDPOINT)
    before = endpoint_weights(sagemaker, name)
    other = sagemaker_backend_factory(owner="env-2")
    assert other.endpoint_name(ENDPOINT) != name
    other.apply(stable_only(artifacts, 1))
    other.delete(ENDPOINT)
    assert endpoint_weights(sagemaker, name) == before

    intruder = sagemaker_backend_factory(owner="env-2")
    intruder.endpoint_name = victim.endpoint_name  # the same name, another owner
    intruder._base = victim._base
    with pytest.raises(BackendError, match="belongs to another environment"):
        intruder.apply(canary(artifacts, 2, 0.5, 0.5))
    with pytest.raises(BackendError, match="belongs to another environment"):
        intruder.delete(ENDPOINT)
    seen = intruder.observe(ENDPOINT)
    assert not seen.ready and "another environment" in seen.detail
    assert endpoint_weights(sagemaker, name) == before
    assert victim.observe(ENDPOINT).ready


# -- refusals: what SageMaker says of an update it could not make ---------------------------

FAILURE = ("The primary container for production variant candidate did not pass the ping "
           "health check.")


def moto_endpoint(backend):
    """moto's record of the endpoint (the server runs in this process), to write what
    SageMaker would: moto never fails an endpoint or rolls an update back."""
    from moto.sagemaker.models import sagemaker_backends

    from tests.integration.sagemaker_fixtures import ACCOUNT, REGION
    state = sagemaker_backends[ACCOUNT][REGION]
    return state, state.endpoints[backend.endpoint_name(ENDPOINT)]


def roll_back(backend, generation: int, reason: str = FAILURE) -> None:
    """What SageMaker does when an update fails: back on the config of ``generation``,
    InService, with the reason recorded."""
    state, endpoint = moto_endpoint(backend)
    config = backend._config_name(ENDPOINT, generation)
    endpoint.endpoint_config_name = config
    endpoint.production_variants = endpoint._process_production_variants(
        state.endpoint_configs[config].production_variants)
    endpoint.failure_reason = reason


def test_an_update_sagemaker_rolled_back_is_refused_while_the_old_config_serves(
        backend, artifacts, sagemaker):
    backend.apply(stable_only(artifacts, generation=1))
    backend.apply(canary(artifacts, 2, 0.9, 0.1))

    roll_back(backend, 1)

    observed = backend.observe(ENDPOINT)
    assert observed.refused == f"SageMaker refused plan 2: {FAILURE}"
    assert observed.detail == observed.refused
    assert observed.generation == 1 and observed.extra["recorded_generation"] == 2
    assert observed.ready and observed.weights() == {"stable": 1.0}


def test_the_plan_sagemaker_refused_is_not_tried_again_and_a_newer_one_is_judged_anew(
        backend, artifacts, sagemaker):
    backend.apply(stable_only(artifacts, generation=1))
    backend.apply(canary(artifacts, 2, 0.9, 0.1))
    roll_back(backend, 1)

    with pytest.raises(BackendError, match="SageMaker refused plan 2"):
        backend.apply(canary(artifacts, 2, 0.9, 0.1))  # the portal converging again
    assert backend.observe(ENDPOINT).extra["endpoint_config"].endswith("-g1")

    observed = backend.apply(stable_only(artifacts, generation=3))  # the portal's rollback

    # Weights only: it asked for no config of its own, so the old FailureReason is not its.
    assert moto_endpoint(backend)[1].failure_reason == FAILURE
    assert observed.refused == "" and observed.generation == 3 and observed.ready


def test_a_failed_endpoint_is_refused_with_its_reason(backend, artifacts):
    backend.apply(stable_only(artifacts, generation=1))
    _, endpoint = moto_endpoint(backend)
    endpoint.endpoint_status, endpoint.failure_reason = "Failed", FAILURE

    observed = backend.observe(ENDPOINT)

    assert observed.refused == f"SageMaker refused plan 1: {FAILURE}"
    assert observed.generation is None and not observed.ready


def test_waiting_for_an_update_that_sagemaker_rolls_back_ends_with_its_refusal(
        sagemaker_backend_factory, artifacts, monkeypatch):
    backend = sagemaker_backend_factory(ready_timeout=30, poll_interval=0.05)
    backend.apply(stable_only(artifacts, generation=1))
    switch = backend._switch_config

    def update_then_fail(endpoint, plan, config_name, actions):
        switch(endpoint, plan, config_name, actions)
        roll_back(backend, 1)

    monkeypatch.setattr(backend, "_switch_config", update_then_fail)

    with pytest.raises(BackendError, match=f"SageMaker refused plan 2: {FAILURE}"):
        backend.apply(canary(artifacts, 2, 0.9, 0.1))
