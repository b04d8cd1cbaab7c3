"""Production readiness of the portal itself: probes, security headers and Django's deploy
checks under the production profile."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from portal.celery import app as celery_app

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_readyz_reports_each_dependency(client):
    answer = client.get("/readyz")
    body = answer.json()
    assert answer.status_code == 200, body
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "broker", "artifact_store"}
    assert all(c["ok"] for c in body["checks"].values())
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_says_which_dependency_is_down_without_its_details(client, monkeypatch,
                                                                   settings, tmp_path):
    monkeypatch.setattr(celery_app.conf, "broker_url",
                        "redis://:s3cret-password@127.0.0.1:1/0")
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the store's folder should be")
    settings.MODELGATE_ARTIFACT_ROOT = blocked / "artifacts"
    answer = client.get("/readyz")
    assert answer.status_code == 503
    checks = answer.json()["checks"]
    assert checks["database"]["ok"] is True
    assert checks["broker"]["ok"] is False and checks["artifact_store"]["ok"] is False
    assert "s3cret" not in answer.content.decode()
    assert str(tmp_path) not in answer.content.decode()
    assert client.get("/healthz").status_code == 200  # alive, only not ready


@pytest.mark.django_db
def test_pages_carry_a_strict_content_security_policy_and_security_headers(client, users):
    client.force_login(users["viewer"])
    answer = client.get("/")
    policy = answer.headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["script-src"] == "'self'"  # no inline or foreign script
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Referrer-Policy"] == "same-origin"
    html = answer.content.decode()
    assert "<script>" not in html and "onclick=" not in html


def production_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DJANGO_", "MODELGATE_", "CELERY_", "DATABASE_", "REDIS_"))}
    env.update({
        "DJANGO_SECRET_KEY": "k" * 20 + "-production-secret-" + "x9Q!" * 8,
        "DJANGO_DEBUG": "false", "DJANGO_ALLOWED_HOSTS": "modelgate.example.com",
        "MODELGATE_HTTPS": "true", "MODELGATE_REQUIRE_SECRET_KEY": "true",
        "MODELGATE_METRICS_TOKEN": "m" * 32, "MODELGATE_AUDIT_KEYS": "k1:" + "a" * 40,
        "MODELGATE_DATA_DIR": extra.pop("data_dir"), "DJANGO_SETTINGS_MODULE": "portal.settings",
    })
    env.update(extra)
    return env


def test_the_production_profile_passes_djangos_deploy_checks(tmp_path):
    run = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level",
                          "WARNING"], cwd=ROOT, env=production_env(data_dir=str(tmp_path)),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "no issues" in run.stdout


def test_production_without_a_metrics_token_is_warned_at_start_up(tmp_path):
    """/metrics is closed then (403, tests/security/test_leaks.py); the warning says why."""
    env = production_env(data_dir=str(tmp_path))
    del env["MODELGATE_METRICS_TOKEN"]
    run = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level",
                          "WARNING"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode != 0
    assert "modelgate.W101" in run.stderr + run.stdout
    assert "MODELGATE_METRICS_TOKEN" in run.stderr + run.stdout


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    env = production_env(data_dir=str(tmp_path))
    del env["DJANGO_SECRET_KEY"]
    run = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "DJANGO_SECRET_KEY must be set" in run.stderr


def test_the_default_development_profile_is_flagged_by_the_deploy_checks(tmp_path):
    """The demo's profile is for a laptop: the same checks say so."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DJANGO_", "MODELGATE_", "CELERY_", "DATABASE_", "REDIS_"))}
    env["MODELGATE_DATA_DIR"] = str(tmp_path)
    run = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level",
                          "WARNING"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode != 0
    assert "security.W004" in run.stderr + run.stdout  # no HSTS without MODELGATE_HTTPS
