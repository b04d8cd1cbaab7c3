"""Multi-model endpoints on Kubernetes (kmock) and SageMaker (moto), decision 68: what is
rendered and sent, valid against the schemas; the catalog's generation fences every apply;
delete removes everything.

What moto 5.2 does not emulate here: no container runs, so nothing calls the container's
``POST /models``, no model is downloaded or loaded, and ``InvokeEndpoint`` with a
``TargetModel`` answers moto's placeholder (the server side of that path is proved by
tests/integration/test_multimodel_server.py); SageMaker's own unloading under memory
pressure; ``UpdateEndpoint`` (the backend recreates the endpoint with ``allow_recreate``).
moto does store and return ``Mode: MultiModel`` and the container's ``ModelDataUrl``.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import kmock
import kubernetes_validate
import pytest

from ops.backends.base import StalePlan
from ops.backends.multimodel import get_multimodel_backend
from ops.plan import Variant
from ops.serving.multimodel import Catalog, CatalogModel
from tests.integration.kube_fixtures import TEST_IMAGE
from tests.integration.sagemaker_fixtures import BUCKET, sagemaker_settings
from tests.portal_fixtures import FEATURES, random_classifier_bytes

pytestmark = pytest.mark.integration
MB = 1 << 20
ENDPOINT = "mme-tenants-env-7"


def catalog(folder, generation: int, names=("tenant-a", "tenant-b", "tenant-c")) -> Catalog:
    models = {}
    for seed, name in enumerate(names):
        data = random_classifier_bytes(seed)
        path = folder / f"{name}.skops"
        path.write_bytes(data)
        spec = Variant(name=name, version_id=seed + 1, version_number=1,
                       artifact_uri=f"file://{path}", sha256=hashlib.sha256(data).hexdigest(),
                       weight=1.0, task="classification",
                       input_schema=[{"name": f, "type": "double"} for f in FEATURES])
        models[name] = CatalogModel(spec, MB)
    return Catalog(ENDPOINT, models, memory_budget=64 * MB, generation=generation,
                   top_models=5)


def test_kubernetes_renders_a_catalog_deployment_valid_against_the_schemas(kube_cluster,
                                                                           tmp_path):
    backend = get_multimodel_backend("kubernetes", {
        "namespace": kube_cluster.namespace, "image": TEST_IMAGE, "host": kube_cluster.url,
        "timeout": 5, "owner": "env-7"})
    first = catalog(tmp_path, 1)
    state = backend.apply_catalog(first)
    assert state.exists and state.generation == 1 and not state.ready  # no pods in kmock
    writes = len(kube_cluster.writes())
    backend.apply_catalog(first)
    assert len(kube_cluster.writes()) == writes  # the same catalog again writes nothing
    backend.apply_catalog(catalog(tmp_path, 2, names=("tenant-a", "tenant-b")))

    sent = [r.data for r in kube_cluster.writes() if r.method == kmock.method.POST]
    stored = [o for _, o in kube_cluster.versions()]
    assert {m["kind"] for m in sent} == {"ConfigMap", "Deployment", "Service"}
    for manifest in sent + stored:
        kubernetes_validate.validate(manifest, "1.30", strict=True)
    name = backend.name(ENDPOINT)
    deployment = kube_cluster.get("Deployment", name)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:2] == ["--catalog", "/etc/modelgate/catalog.json"]
    assert container["resources"]["limits"]["memory"] == "576Mi"  # budget + headroom
    held = Catalog.from_json(kube_cluster.get("ConfigMap", f"{name}-catalog")["data"][
        "catalog.json"])
    assert held.generation == 2 and sorted(held.models) == ["tenant-a", "tenant-b"]
    with pytest.raises(StalePlan):
        backend.apply_catalog(first)
    backend.delete_catalog(ENDPOINT)
    assert all(kube_cluster.get(kind, n) is None for kind, n in (
        ("Service", name), ("Deployment", name), ("ConfigMap", f"{name}-catalog")))
    backend.delete_catalog(ENDPOINT)  # twice is harmless


def test_sagemaker_serves_a_catalog_from_one_prefix_of_a_multi_model_endpoint(
        moto_server, tmp_path):
    moto_server.reset()
    s3 = moto_server.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    backend = get_multimodel_backend("sagemaker", {**sagemaker_settings(moto_server.url),
                                                   "owner": "env-7"})
    first = catalog(tmp_path, 1)
    state = backend.apply_catalog(first)
    assert state.ready and state.generation == 1
    sagemaker = moto_server.client("sagemaker")
    described = sagemaker.describe_endpoint(EndpointName=backend.endpoint_name(ENDPOINT))
    config = sagemaker.describe_endpoint_config(
        EndpointConfigName=described["EndpointConfigName"])
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    prefix = backend.models_prefix(ENDPOINT)
    assert model["PrimaryContainer"]["Mode"] == "MultiModel"
    assert model["PrimaryContainer"]["ModelDataUrl"] == f"s3://{BUCKET}/{prefix}"
    assert model["PrimaryContainer"]["Environment"]["MODELGATE_MEMORY_BUDGET"] == str(64 * MB)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"])
    assert keys == [f"{prefix}tenant-{x}.tar.gz" for x in "abc"]
    tarball = s3.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        entry = json.load(tar.extractfile("model.json"))
        artifact = tar.extractfile(entry["artifact_uri"]).read()
    assert hashlib.sha256(artifact).hexdigest() == entry["sha256"]

    second = catalog(tmp_path, 2, names=("tenant-a", "tenant-b"))
    assert backend.apply_catalog(second).generation == 2
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"])
    assert keys == [f"{prefix}tenant-{x}.tar.gz" for x in "ab"]  # c can no longer load
    with pytest.raises(StalePlan):
        backend.apply_catalog(first)
    backend.delete_catalog(ENDPOINT)
    assert not backend.observe_catalog(ENDPOINT).exists
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
