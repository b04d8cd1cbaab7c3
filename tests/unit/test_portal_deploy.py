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
    assert set(specs) == {"modelgate-web", "modelgate-worker", "modelgate-rollout-worker",
                          "modelgate-beat", "modelgate-migrate"}
    commands = {name: spec["containers"][0]["command"] for name, spec in specs.items()}
    assert commands["modelgate-web"][-1] == "portal.wsgi"
    assert commands["modelgate-migrate"] == ["python", "manage.py", "migrate", "--noinput"]
    assert commands["modelgate-worker"][:4] == ["celery", "-A", "portal", "worker"]
    assert commands["modelgate-beat"][:4] == ["celery", "-A", "portal", "beat"]
    from celery.app.utils import find_app  # how `celery -A portal` finds the app

    assert find_app("portal").main == "modelgate"
    for spec in specs.values():
        container = spec["containers"][0]
        assert container["image"] == "modelgate-portal"  # kustomize sets registry and tag
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["resources"]["requests"] and container["resources"]["limits"]


def test_rollouts_have_workers_of_their_own_and_every_task_a_worker():
    """Rollouts, rollbacks and alert handling never queue behind SHAP, diffs or profiles:
    their tasks are routed to a queue only the rollout workers consume, and between them
    the two Deployments consume every queue a task is sent to."""
    from django.conf import settings

    from portal.celery import app

    def queues(name):
        command = pod_specs()[name]["containers"][0]["command"]
        return set(command[command.index("-Q") + 1].split(","))

    heavy, rollouts = queues("modelgate-worker"), queues("modelgate-rollout-worker")
    assert not heavy & rollouts
    app.loader.import_default_modules()
    tasks = [name for name in app.tasks if name.startswith("workers.")]
    routed = {name: app.amqp.router.route({}, name, (), {})["queue"].name for name in tasks}
    assert {routed[name] for name in settings.ROLLOUT_TASKS} == rollouts
    assert routed["workers.registry.explain_version"] in heavy
    assert routed["workers.releases.compute_release_diff"] in heavy
    assert set(routed.values()) <= heavy | rollouts, routed
    assert {name for name, queue in routed.items() if queue in rollouts} == \
        set(settings.ROLLOUT_TASKS)
    # Bound apart: a message for one queue never reaches the other's workers.
    bindings = [(q.exchange.name, q.routing_key) for q in app.amqp.queues.values()]
    assert len(set(bindings)) == len(bindings), bindings


def test_probes_hit_endpoints_the_portal_serves(client):
    web = pod_specs()["modelgate-web"]["containers"][0]
    paths = {web[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe",
                                                 "readinessProbe")}
    assert paths == {"/healthz", "/readyz"}
    assert client.get("/healthz").status_code == 200


def test_secrets_come_from_files_never_from_plain_values():
    config = next(d for d in documents() if d["kind"] == "ConfigMap")["data"]
    for name in ("DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL",
                 "MODELGATE_PREDICTION_ID_SECRET", "MODELGATE_METRICS_TOKEN",
                 "MODELGATE_AUDIT_KEYS"):
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
    for name in ("modelgate-web", "modelgate-worker", "modelgate-rollout-worker"):
        budget = docs[("PodDisruptionBudget", name)]["spec"]
        deployment = docs[("Deployment", name)]["spec"]
        assert budget["selector"] == deployment["selector"]
        assert budget["minAvailable"] < deployment["replicas"]
    service = docs[("Service", "modelgate-web")]["spec"]
    assert service["selector"] == docs[("Deployment", "modelgate-web")]["spec"]["selector"][
        "matchLabels"]


def test_prometheus_gets_the_metrics_token_the_production_profile_requires():
    """The config is the production profile, where /metrics answers 403 without
    MODELGATE_METRICS_TOKEN: the token comes from the Secret, and the guide shows Prometheus
    reading the same key as its bearer token file."""
    config = next(d for d in documents() if d["kind"] == "ConfigMap")["data"]
    assert config["MODELGATE_HTTPS"] == "true" and config["MODELGATE_REQUIRE_SECRET_KEY"] == "true"
    key = config["MODELGATE_METRICS_TOKEN_FILE"].removeprefix("/run/secrets/modelgate/")
    guide = (ROOT / "docs" / "operations.md").read_text()
    assert f"--from-literal={key}=" in guide
    assert "credentials_file:" in guide and f"key: {key}" in guide


# -- the request-buffering proxy (issue 18: slow bodies) ---------------------------------------

NGINX_CONF = MANIFESTS / "nginx.conf"


def nginx_directives() -> dict[str, list[str]]:
    """Each directive of the shipped nginx.conf with its arguments (comments dropped)."""
    found: dict[str, list[str]] = {}
    for line in NGINX_CONF.read_text().splitlines():
        line = line.split("#", 1)[0].strip().rstrip(";").strip()
        if line and not line.endswith(("{", "}")):
            name, _, rest = line.partition(" ")
            found.setdefault(name, []).append(rest.strip())
    return found


def test_the_web_service_reaches_gunicorn_only_through_the_buffering_proxy():
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    generated = {g["name"]: g for g in kustomization["configMapGenerator"]}
    assert generated["modelgate-web-proxy"]["files"] == ["nginx.conf"] and NGINX_CONF.exists()
    config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "modelgate-web-proxy"},
                  "data": {"nginx.conf": NGINX_CONF.read_text()}}
    kubernetes_validate.validate(config_map, "1.30", strict=True)

    web = pod_specs()["modelgate-web"]
    gunicorn, proxy = web["containers"]
    env = {e["name"]: e["value"] for e in gunicorn["env"]}
    assert env["MODELGATE_BIND"] == "127.0.0.1:8000"  # nothing reaches it but the proxy
    assert "ports" not in gunicorn
    assert proxy["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert proxy["command"][:3] == ["nginx", "-c", "/etc/modelgate/nginx.conf"]
    mount = next(m for m in proxy["volumeMounts"] if m["mountPath"] == "/etc/modelgate")
    volume = next(v for v in web["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == "modelgate-web-proxy"
    assert {m["mountPath"] for m in proxy["volumeMounts"]} >= {"/tmp"}  # spooled bodies
    assert proxy["securityContext"]["readOnlyRootFilesystem"] is True
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert gunicorn[probe]["httpGet"]["port"] == 8080  # through the proxy
    docs = {(d["kind"], d["metadata"]["name"]): d for d in documents()}
    assert docs[("Service", "modelgate-web")]["spec"]["ports"][0]["targetPort"] == "http"
    annotations = docs[("Deployment", "modelgate-web")]["spec"]["template"]["metadata"][
        "annotations"]
    assert annotations["prometheus.io/port"] == "8080"


def test_the_proxy_buffers_whole_requests_within_the_upload_limits():
    from django.conf import settings

    directives = nginx_directives()
    assert directives["proxy_request_buffering"] == ["on"]
    assert directives["proxy_buffering"] == ["on"]
    assert directives["proxy_pass"] == ["http://gunicorn"]
    assert directives["server"] == ["127.0.0.1:8000"]
    assert directives["listen"] == ["8080 default_server"]
    for name in ("client_body_timeout", "client_header_timeout", "send_timeout"):
        assert int(directives[name][0].rstrip("s")) <= 30, name
    limit = int(directives["client_max_body_size"][0].rstrip("m")) * 1024 * 1024
    largest = max(settings.MODELGATE_MAX_DATASET_BYTES, settings.MODELGATE_MAX_ARTIFACT_BYTES)
    # The portal refuses its own limits with a JSON 413 from Content-Length; the proxy
    # takes a little more (the multipart envelope), never less.
    assert largest < limit <= largest + 2 * 1024 * 1024
    # Everything it writes is under /tmp (read-only root filesystem).
    for name in ("pid", "client_body_temp_path", "proxy_temp_path"):
        assert directives[name][0].startswith("/tmp/"), name


def test_nginx_accepts_the_shipped_configuration(tmp_path):
    import shutil
    import subprocess

    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None)
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light; .ci/run does)")
    result = subprocess.run([nginx, "-t", "-c", str(NGINX_CONF), "-p", f"{tmp_path}/",
                             "-e", "stderr"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
