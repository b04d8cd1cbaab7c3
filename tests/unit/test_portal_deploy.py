"""The portal's image and Kubernetes manifests cannot be built or applied here: check what
a build and a cluster rely on (every manifest valid in strict mode, every file the image
copies present, commands and probes that exist, secrets as files, one beat)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def of(keyword: str) -> list[str]:
    return [rest for k, rest in instructions() if k == keyword]


def documents() -> list[dict]:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d]
    return docs


def pod_specs() -> dict[str, dict]:
    specs = {}
    for doc in documents():
        if doc["kind"] in ("Deployment", "Job"):
            specs[doc["metadata"]["name"]] = doc["spec"]["template"]["spec"]
    return specs


# -- the image ------------------------------------------------------------------------------

def test_dockerfile_parses_and_every_copy_source_exists():
    assert of("FROM")[0].startswith("python:3.11-slim")
    for arguments in of("COPY"):
        parts = [p for p in shlex.split(arguments) if not p.startswith("--")]
        for source in parts[:-1]:
            assert (ROOT / source).exists(), f"COPY source {source} is missing"
    ignored = (ROOT / ".dockerignore").read_text().split()
    copied = {shlex.split(a)[0].rstrip("/") for a in of("COPY")}
    assert not copied & set(ignored), "the image copies what .dockerignore leaves out"


def test_the_image_runs_unprivileged_and_serves_the_portal():
    assert of("USER") == ["10001"]
    assert json.loads(of("CMD")[0]) == ["gunicorn", "-c", "python:portal.gunicorn_conf",
                                        "portal.wsgi"]
    assert "8000" in of("EXPOSE")[0]


def test_runtime_requirements_are_the_locks_pins_without_test_tools():
    def pins(name):
        return dict(line.split("==") for line in (ROOT / "requirements" / name).read_text()
                    .splitlines() if "==" in line and not line.startswith("#"))
    runtime, lock = pins("runtime.txt"), pins("lock.txt")
    assert {k: lock.get(k) for k in runtime} == runtime  # same versions as the tests run
    assert not {"pytest", "playwright", "moto", "kmock"} & set(runtime)
    assert {"django", "celery", "gunicorn", "django-csp", "shap"} <= set(runtime)


# -- the manifests -------------------------------------------------------------------------

@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_manifest_is_a_valid_kubernetes_object_in_strict_mode(doc):
    kubernetes_validate.validate(doc, "1.30", strict=True)


def test_web_worker_beat_and_migration_run_the_image_with_real_commands():
    specs = pod_specs()
    assert set(specs) == {"modelgate-web", "modelgate-worker", "modelgate-beat",
                          "modelgate-migrate"}
    commands = {name: spec["containers"][0]["command"] for name, spec in specs.items()}
    assert commands["modelgate-web"][-1] == "portal.wsgi"
    assert commands["modelgate-migrate"] == ["python", "manage.py", "migrate", "--noinput"]
    assert commands["modelgate-worker"][:4] == ["celery", "-A", "workers", "worker"]
    assert commands["modelgate-beat"][:4] == ["celery", "-A", "workers", "beat"]
    import workers  # the Celery app the commands name
    assert workers.app.main == "modelgate"
    for spec in specs.values():
        container = spec["containers"][0]
        assert container["image"] == "modelgate-portal"  # kustomize sets registry and tag
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["resources"]["requests"] and container["resources"]["limits"]


def test_probes_hit_endpoints_the_portal_serves(client):
    web = pod_specs()["modelgate-web"]["containers"][0]
    paths = {web[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe",
                                                 "readinessProbe")}
    assert paths == {"/healthz", "/readyz"}
    assert client.get("/healthz").status_code == 200


def test_secrets_come_from_files_never_from_plain_values():
    config = next(d for d in documents() if d["kind"] == "ConfigMap")["data"]
    for name in ("DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL",
                 "MODELGATE_PREDICTION_ID_SECRET"):
        assert name not in config and config[f"{name}_FILE"].startswith("/run/secrets/")
    for spec in pod_specs().values():
        mounts = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        assert "/run/secrets/modelgate" in mounts
        secret = next(v for v in spec["volumes"] if "secret" in v)
        assert secret["secret"]["defaultMode"] == 0o400


def test_one_beat_and_disruption_budgets_for_web_and_workers():
    docs = {(d["kind"], d["metadata"]["name"]): d for d in documents()}
    beat = docs[("Deployment", "modelgate-beat")]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"
    for name in ("modelgate-web", "modelgate-worker"):
        budget = docs[("PodDisruptionBudget", name)]["spec"]
        deployment = docs[("Deployment", name)]["spec"]
        assert budget["selector"] == deployment["selector"]
        assert budget["minAvailable"] < deployment["replicas"]
    service = docs[("Service", "modelgate-web")]["spec"]
    assert service["selector"] == docs[("Deployment", "modelgate-web")]["spec"]["selector"][
        "matchLabels"]
