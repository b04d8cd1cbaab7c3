"""gunicorn leaves health checks that succeed out of its access log (portal/gunicorn_conf.py):
probes ask every few seconds and would bury everything else."""

import importlib
import logging


def access_line(path: str, status: str) -> logging.LogRecord:
    atoms = {"U": path, "s": status, "m": "GET"}  # gunicorn passes its atoms as the args
    return logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, "%(m)s %(U)s",
                             (atoms,), None)


def test_successful_health_checks_are_not_access_logged(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # read when imported
    conf = importlib.import_module("portal.gunicorn_conf")
    assert not conf._not_a_probe(access_line("/healthz", "200"))
    assert not conf._not_a_probe(access_line("/readyz", "200"))
    assert conf._not_a_probe(access_line("/readyz", "503"))  # a failing check is news
    assert conf._not_a_probe(access_line("/releases/", "200"))
    assert access_line("/healthz", "200").getMessage() == "GET /healthz"
