"""A multi-model endpoint as a real process, started by the local backend: models load on
first use, the least recently used go when the budget is full, concurrent cold requests load
once, unknown and unready names are 404s naming them, and the catalog is fenced by
generation. No Django."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from ops.backends.base import StalePlan
from ops.backends.multimodel import get_multimodel_backend
from ops.plan import Variant
from ops.serving.multimodel import Catalog, CatalogModel
from tests.integration.local_fixtures import free_port
from tests.portal_fixtures import FEATURES, random_classifier_bytes

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("multimodel-server")]  # one server
MB = 1 << 20
ENDPOINT = "mme-tenants-env-1"
ROW = [[14.0, 20.0, 90.0, 600.0, 0.1]]


def _models(folder, count: int) -> dict[str, CatalogModel]:
    models = {}
    for seed in range(count):
        data = random_classifier_bytes(seed)
        path = folder / f"tenant-{seed}.skops"
        path.write_bytes(data)
        spec = Variant(name=f"tenant-{seed}", version_id=100 + seed, version_number=1,
                       artifact_uri=f"file://{path}", sha256=hashlib.sha256(data).hexdigest(),
                       weight=1.0, task="classification",
                       input_schema=[{"name": f, "type": "double"} for f in FEATURES])
        models[spec.name] = CatalogModel(spec, MB)
    return models


def _metrics(url: str) -> dict:
    text = requests.get(f"{url}/metrics", timeout=30).text
    return {f.name: f for f in text_string_to_metric_families(text)}


def _events(url: str) -> dict[str, float]:
    family = _metrics(url)["modelgate_multimodel_events"]
    return {s.labels["event"]: s.value for s in family.samples if s.name.endswith("_total")}


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multimodel")
    backend = get_multimodel_backend("local", {
        "state_dir": str(folder / "serving"), "ports": {ENDPOINT: free_port()},
        "owner": "env-1", "ready_timeout": 30})
    models = _models(folder, 5)
    catalog = Catalog(ENDPOINT, models, memory_budget=3 * MB, generation=1, top_models=2,
                      unready={"tenant-late": "version 2 is still being validated"})
    state = backend.apply_catalog(catalog)
    yield backend, catalog, state.url
    backend.delete_catalog(ENDPOINT)


def test_models_load_on_demand_and_the_least_recent_is_evicted(endpoint):
    _, _, url = endpoint
    for seed in (0, 1, 2, 0, 3, 4):
        answer = requests.post(f"{url}/v2/models/tenant-{seed}/infer",
                               json={"instances": ROW}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_name"] == f"tenant-{seed}"
    events = _events(url)
    assert events["load"] == 5 and events["evict"] == 2  # 0 was a hit; 1 then 2 went
    loaded = _metrics(url)["modelgate_multimodel_loaded_bytes"].samples[0].value
    assert loaded <= 3 * MB


def test_concurrent_cold_requests_load_the_model_once(endpoint):
    _, _, url = endpoint
    before = _events(url)["load"]
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: requests.post(
            f"{url}/v2/models/tenant-1/infer", json={"instances": ROW}, timeout=30), range(12)))
    assert [a.status_code for a in answers] == [200] * 12
    assert _events(url)["load"] == before + 1


def test_unknown_and_unready_models_are_404s_naming_them(endpoint):
    _, _, url = endpoint
    unknown = requests.post(f"{url}/v2/models/tenant-99/infer", json={"instances": ROW},
                            timeout=30)
    assert unknown.status_code == 404 and unknown.json()["code"] == "model_not_found"
    assert "tenant-99" in unknown.json()["error"]
    late = requests.post(f"{url}/v2/models/tenant-late/infer", json={"instances": ROW},
                         timeout=30)
    assert late.status_code == 404 and late.json()["code"] == "model_not_ready"
    assert "tenant-late" in late.json()["error"] and "validated" in late.json()["error"]


def test_sagemaker_invocations_name_the_model_in_the_target_header(endpoint):
    _, _, url = endpoint
    answer = requests.post(f"{url}/invocations", json={"instances": ROW}, timeout=30,
                           headers={"X-Amzn-SageMaker-Target-Model": "tenant-2.tar.gz"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["variant"] == "tenant-2"
    missing = requests.post(f"{url}/invocations", json={"instances": ROW}, timeout=30)
    assert missing.status_code == 400 and missing.json()["code"] == "missing_target_model"


def test_a_removed_model_is_404_and_an_older_catalog_is_refused(endpoint):
    backend, catalog, url = endpoint
    models = {n: m for n, m in catalog.models.items() if n != "tenant-4"}
    newer = Catalog(ENDPOINT, models, memory_budget=3 * MB, generation=2, top_models=2)
    assert backend.apply_catalog(newer).generation == 2
    gone = requests.post(f"{url}/v2/models/tenant-4/infer", json={"instances": ROW}, timeout=30)
    assert gone.status_code == 404
    with pytest.raises(StalePlan):
        backend.apply_catalog(catalog)
    assert backend.observe_catalog(ENDPOINT).generation == 2
