"""The Kubernetes manifests' settings boot the portal: the migration job, web, both workers
and beat started with the shipped ConfigMap and the Secret's keys as files, each with the
command and the environment its manifest gives it.

The incident: ``deploy/kubernetes/config.yaml`` set ``MODELGATE_LOG_LEVEL: "info"`` and
every process died at start-up (``Unknown level: 'info'``); nothing had started the
portal with the settings the manifests carry.

What the cluster would provide and this machine lacks is replaced, and only that: the
Secret's files (generated here, mounted under a temporary folder instead of
/run/secrets/modelgate), the database and Redis behind the Secret's URLs (this machine's
PostgreSQL and Redis), the S3 bucket (moto's S3 server, through boto3's
``AWS_ENDPOINT_URL``; the pod's IAM role becomes test credentials), and ports (free ones:
two web pods would share none). Hosts named by the ConfigMap are reached by their header
(``Host: modelgate.example.com`` through the proxy that sets ``X-Forwarded-Proto``).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.integration.boot_fixtures import celery_ping, database, start, stop, wait_ready
from tests.integration.local_fixtures import free_port

__all__ = ["database"]  # the fixture

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SECRETS = "/run/secrets/modelgate/"



def manifests() -> dict[str, dict]:
    found = {}
    for path in sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") != "Kustomization":
                found[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return found


def container(doc: dict) -> dict:
    spec = doc["spec"]["template"]["spec"]
    if doc["kind"] == "CronJob":
        spec = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec["containers"][0]


@pytest.fixture(scope="module")
def s3():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def config(tmp_path_factory, s3, database) -> dict:
    """The ConfigMap's variables as the pods see them, the Secret's keys as files."""
    import boto3

    folder = tmp_path_factory.mktemp("secrets")
    data = manifests()["ConfigMap/modelgate-config"]["data"]
    values = {
        "django-secret-key": secrets.token_urlsafe(50),
        "database-url": database,
        "redis-url": "redis://127.0.0.1:6379/13",
        "prediction-id-secret": secrets.token_urlsafe(32),
        "metrics-token": secrets.token_urlsafe(32),
        "audit-keys": f"k1:{secrets.token_urlsafe(48)}",
    }
    env = {}
    for name, value in data.items():
        if name.endswith("_FILE") and value.startswith(SECRETS):
            key = value[len(SECRETS):]
            assert key in values, f"{name} names a Secret key the operations guide lacks: {key}"
            (folder / key).write_text(values[key] + "\n")
            value = str(folder / key)
        env[name] = value
    boto3.client("s3", endpoint_url=s3, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(
        Bucket=data["MODELGATE_ARTIFACT_BUCKET"])
    env.update({
        "AWS_ENDPOINT_URL": s3, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MODELGATE_REDIS_PREFIX": f"modelgate-boot-{uuid.uuid4().hex[:8]}:",
        "PATH": f"{BIN}:{os.environ['PATH']}", "HOME": str(folder), "LANG": "C.UTF-8",
    })
    return env


def process_env(config: dict, spec: dict, **extra) -> dict:
    env = dict(config)
    for item in spec.get("env", []):
        assert "value" in item, f"{item['name']}: only plain values are expected here"
        env[item["name"]] = item["value"]
    env.update(extra)
    return env


def launch(spec: dict, env: dict, log: Path, replace: dict | None = None):
    return start([(replace or {}).get(part, part) for part in spec["command"]], env, log)


def test_every_process_boots_with_the_shipped_configuration(config, tmp_path):
    found = manifests()
    started = time.monotonic()
    migrate = container(found["Job/modelgate-migrate"])
    done = subprocess.run(migrate["command"], cwd=ROOT, env=process_env(config, migrate),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]

    web = container(found["Deployment/modelgate-web"])
    port = free_port()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    processes = {
        "web": launch(web, process_env(config, web, MODELGATE_BIND=f"127.0.0.1:{port}"),
                     tmp_path / "web.log"),
        **{name: launch(container(found[f"Deployment/modelgate-{name}"]),
                       process_env(config, container(found[f"Deployment/modelgate-{name}"]),
                                   MODELGATE_WORKER_METRICS_PORT=str(free_port()),
                                   PROMETHEUS_MULTIPROC_DIR=str(tmp / name)),
                       tmp_path / f"{name}.log",
                       replace={"/tmp/celerybeat-schedule": str(tmp / "beat-schedule")})
           for name in ("worker", "rollout-worker", "beat")},
    }
    (tmp / "worker").mkdir()
    (tmp / "rollout-worker").mkdir()
    try:
        wait_ready(f"http://127.0.0.1:{port}", processes, tmp_path,
                   headers={"Host": "modelgate.example.com", "X-Forwarded-Proto": "https"})
        print(f"\nmanifests' settings: migrated and /readyz 200 in "
              f"{time.monotonic() - started:.1f} s")
        answers = celery_ping(process_env(config, {}))
        assert answers.count("pong") == 2, answers  # each pod is celery@<its host name>
        time.sleep(3)
        assert processes["beat"].poll() is None
        assert "beat: Starting" in (tmp_path / "beat.log").read_text()
    finally:
        stop(*processes.values())
