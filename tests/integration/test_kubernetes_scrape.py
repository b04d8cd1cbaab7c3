"""The scrape job docs/operations.md gives for model pods on Kubernetes, run by a real
Prometheus against the pods the backend creates, keeps two projects' same-named endpoints
apart as the portal's queries select them (decisions 22 and 23).

What is real: Prometheus (the guide's relabelling, scraping, the portal's queries), the
manifests (built by the backend on the API emulator) and the model servers (each pod's
container command run on this machine, on the plan its ConfigMap mounts). What is not: the
discovery. Debian's Prometheus is built without Kubernetes discovery (a ``kubernetes_sd_configs``
key does not parse) and no cluster runs here, so the pods reach Prometheus through file
discovery, with the targets and meta labels the pod role documents (``pod_targets``). A
KServe pod gets its predictor's annotations and containers plus Knative's queue-proxy
sidecar, as KServe would run it.
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml

from ops import promql
from tests.integration.local_fixtures import plan
from tests.portal_fixtures import FEATURES

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "operations.md"
ENDPOINT = "churn"


def guide_job() -> dict:
    """The ``modelgate-models`` scrape job of the operations guide, as printed there."""
    for block in re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(), re.S):
        config = yaml.safe_load(block)
        jobs = (config or {}).get("scrape_configs", []) if isinstance(config, dict) else []
        for job in jobs:
            if job.get("job_name") == "modelgate-models":
                return job
    raise AssertionError("docs/operations.md gives no modelgate-models scrape job")


def _meta_name(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def pod_targets(pod: dict) -> list[dict]:
    """The targets and meta labels Prometheus's Kubernetes discovery (role: pod) gives a
    running pod: one target per container port (per container without ports), as its
    documentation lists them (kubernetes_sd_config, "pod")."""
    meta, ip = pod["metadata"], pod["status"]["podIP"]
    common = {"__meta_kubernetes_namespace": meta["namespace"],
              "__meta_kubernetes_pod_name": meta["name"],
              "__meta_kubernetes_pod_ip": ip,
              "__meta_kubernetes_pod_phase": pod["status"]["phase"],
              "__meta_kubernetes_pod_ready": "true",
              "__meta_kubernetes_pod_uid": meta["uid"]}
    for kind in ("label", "annotation"):
        for key, value in (meta.get(f"{kind}s") or {}).items():
            common[f"__meta_kubernetes_pod_{kind}_{_meta_name(key)}"] = value
            common[f"__meta_kubernetes_pod_{kind}present_{_meta_name(key)}"] = "true"
    groups = []
    for container in pod["spec"]["containers"]:
        labels = {**common, "__meta_kubernetes_pod_container_name": container["name"],
                  "__meta_kubernetes_pod_container_image": container.get("image", "")}
        ports = container.get("ports") or []
        if not ports:
            groups.append({"targets": [ip], "labels": labels})
        for port in ports:
            groups.append({"targets": [f"{ip}:{port['containerPort']}"], "labels": {
                **labels,
                "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
                "__meta_kubernetes_pod_container_port_protocol": port.get("protocol", "TCP")}})
    return groups


def loopback_address() -> str:
    """A 127.0.0.x address whose port 8080 (the model server's, fixed in the pod spec) is
    free: each pod gets its own address, as pods get their own IPs."""
    for _ in range(100):
        address = f"127.0.{random.randint(1, 254)}.{random.randint(2, 254)}"
        with socket.socket() as s:
            try:
                s.bind((address, 8080))
            except OSError:
                continue
        return address
    raise AssertionError("no loopback address with port 8080 free")


def pod(namespace: str, name: str, ip: str, metadata: dict, spec: dict) -> dict:
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()),
                         "resourceVersion": "7", **metadata},
            "spec": spec,
            "status": {"phase": "Running", "podIP": ip, "hostIP": ip,
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def kserve_pod(cluster, name: str, ip: str) -> dict:
    """The predictor pod KServe would run for InferenceService ``name``."""
    predictor = cluster.get("InferenceService", name)["spec"]["predictor"]
    queue_proxy = {"name": "queue-proxy", "image": "knative/queue",
                   "ports": [{"name": "http-queueadm", "containerPort": 8022},
                             {"name": "queue-port", "containerPort": 8012},
                             {"name": "http-usermetric", "containerPort": 9091}]}
    return pod(cluster.namespace, f"{name}-predictor-00001-deployment-x1", ip,
               {"labels": {"serving.kserve.io/inferenceservice": name,
                           "component": "predictor"},
                "annotations": predictor.get("annotations", {})},
               {"containers": [*predictor["containers"], queue_proxy],
                "volumes": predictor["volumes"]})


def deployment_pod(cluster, name: str, ip: str) -> dict:
    """A pod of Deployment ``name``, from its template."""
    template = cluster.get("Deployment", name)["spec"]["template"]
    return pod(cluster.namespace, f"{name}-5d9f8-abcde", ip, template["metadata"],
               template["spec"])


def run_pod(cluster, spec: dict, ip: str, folder: Path, processes: list) -> str:
    """Runs the pod's model-server container here: its command and arguments on the plan its
    ConfigMap mounts, listening on the pod's address. Returns that address with the port."""
    (container,) = [c for c in spec["spec"]["containers"] if c["name"] != "queue-proxy"]
    volume = spec["spec"]["volumes"][0]["configMap"]
    key = next((i["key"] for i in volume.get("items", []) if i["path"] == "plan.json"),
               "plan.json")
    plan_file = folder / f"{ip}.json"
    plan_file.write_text(cluster.get("ConfigMap", volume["name"])["data"][key])
    args = list(container["args"])
    args[args.index("--plan") + 1] = str(plan_file)
    args[args.index("--host") + 1] = ip
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert container["command"][:3] == ["python", "-m", "ops.serving"]
    processes.append(subprocess.Popen(
        [sys.executable, "-m", "ops.serving", *args], cwd=ROOT, env={**os.environ, **env},
        stdout=open(folder / f"{ip}.log", "wb"), stderr=subprocess.STDOUT))
    url, deadline = f"http://{ip}:8080", time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return url
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise AssertionError((folder / f"{ip}.log").read_text()[-2000:])


def query(prometheus: str, expr: str) -> list[dict]:
    answer = requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]["result"]


@pytest.mark.timeout(180)
def test_the_guides_scrape_job_labels_each_projects_model_pods_with_project_and_environment(
        kube_cluster, kubernetes_backend_factory, artifact_variant, managed_prometheus,
        tmp_path):
    # Two projects, each an environment called production, each serving a model called
    # churn in one namespace: one on KServe, one on Deployments.
    clinical = kubernetes_backend_factory(
        "kserve", owner="env-1",
        monitoring_labels={"project": "clinical-ml", "environment": "production"})
    fraud = kubernetes_backend_factory(
        "deployments", owner="env-2",
        monitoring_labels={"project": "fraud-team", "environment": "production"})
    clinical.apply(plan(ENDPOINT, 1, artifact_variant("stable", 1, version_id=11)))
    fraud.apply(plan(ENDPOINT, 1, artifact_variant("stable", 2, version_id=21)))

    (isvc,) = kube_cluster.names("InferenceService")
    (deployment,) = kube_cluster.names("Deployment")
    clinical_ip, fraud_ip = loopback_address(), loopback_address()
    while fraud_ip == clinical_ip:
        fraud_ip = loopback_address()
    pods = [kserve_pod(kube_cluster, isvc, clinical_ip),
            deployment_pod(kube_cluster, deployment, fraud_ip)]
    assert pods[0]["metadata"]["annotations"] == {"modelgate.io/project": "clinical-ml",
                                                  "modelgate.io/environment": "production"}
    assert pods[1]["metadata"]["annotations"]["modelgate.io/project"] == "fraud-team"

    # A pod of another program in the namespace: not scraped. A model pod created before
    # the annotations (the portal's label only): scraped, with no project or environment.
    container = {"name": "model-server", "ports": [{"containerPort": 8080}]}
    old_ip = loopback_address()
    pods.append(pod(kube_cluster.namespace, "other-app-1", loopback_address(),
                    {"labels": {"app": "other"}}, {"containers": [container]}))
    pods.append(pod(kube_cluster.namespace, "churn-env-3-stable-1", old_ip,
                    {"labels": {"app.kubernetes.io/managed-by": "modelgate"}},
                    {"containers": [container]}))
    processes: list[subprocess.Popen] = []
    try:
        clinical_url = run_pod(kube_cluster, pods[0], clinical_ip, tmp_path, processes)
        run_pod(kube_cluster, pods[1], fraud_ip, tmp_path, processes)
        body = {"inputs": [{"name": f, "shape": [1], "datatype": "FP64", "data": [1.0]}
                           for f in FEATURES]}
        for _ in range(3):  # requests reach the clinical-ml model only
            answer = requests.post(f"{clinical_url}/v2/models/{ENDPOINT}/infer", json=body,
                                   timeout=10)
            assert answer.status_code == 200, answer.text

        job = guide_job()
        assert job["kubernetes_sd_configs"] == [{"role": "pod",
                                                 "namespaces": {"names": ["models"]}}]
        # Discovery by file (module doc): the pods' targets and meta labels as the pod role
        # gives them; the guide's relabelling is Prometheus's own from here on.
        del job["kubernetes_sd_configs"]
        discovered = tmp_path / "pods.json"
        discovered.write_text(json.dumps([g for p in pods for g in pod_targets(p)]))
        job["file_sd_configs"] = [{"files": [str(discovered)]}]
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [job]}))
        prometheus = managed_prometheus(config)

        deadline, targets = time.monotonic() + 60, []
        while time.monotonic() < deadline:
            targets = requests.get(f"{prometheus}/api/v1/targets", timeout=5).json()[
                "data"]["activeTargets"]
            running = [t for t in targets if old_ip not in t["scrapeUrl"]]
            if len(running) == 2 and all(t["health"] == "up" for t in running) and query(
                    prometheus, "modelgate_requests_total"):
                break
            time.sleep(0.5)
        # One target a pod (the queue-proxy's ports and the other program are dropped); the
        # old pod's (nothing runs it here) carries neither label.
        assert sorted(t["scrapeUrl"] for t in targets) == sorted(
            f"http://{ip}:8080/metrics" for ip in (clinical_ip, fraud_ip, old_ip)), targets
        assert all(t["health"] == "up" for t in running), targets
        (old,) = [t for t in targets if old_ip in t["scrapeUrl"]]
        assert "project" not in old["labels"] and "environment" not in old["labels"]

        for project, ip in (("clinical-ml", clinical_ip), ("fraud-team", fraud_ip)):
            where = promql.selector(environment="production", project=project,
                                    endpoint=ENDPOINT)
            (series,) = query(prometheus, f"{promql.PLAN_GENERATION}{{{where}}}")
            assert series["metric"]["instance"] == f"{ip}:8080"
        where = promql.selector(environment="production", project="clinical-ml",
                                endpoint=ENDPOINT)
        (total,) = query(prometheus, f"sum({promql.total(promql.REQUESTS)}{{{where}}})")
        assert float(total["value"][1]) == 3
        where = promql.selector(environment="production", project="fraud-team",
                                endpoint=ENDPOINT)
        assert query(prometheus, f"sum({promql.total(promql.REQUESTS)}{{{where}}})") == []
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
