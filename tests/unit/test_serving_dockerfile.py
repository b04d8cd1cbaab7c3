"""The model server's Dockerfile: it cannot be built here, so check what a build relies on."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from ops.serving.server import parse_args

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "ops" / "serving" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def of(keyword: str) -> list[str]:
    return [rest for k, rest in instructions() if k == keyword]


def test_base_image_is_python_311_slim():
    assert of("FROM")[0].startswith("python:3.11-slim")


def test_every_copy_source_exists_in_the_build_context():
    copies = of("COPY")
    assert copies
    for arguments in copies:
        parts = [p for p in shlex.split(arguments) if not p.startswith("--")]
        for source in parts[:-1]:
            assert (ROOT / source).exists(), f"COPY source {source} is missing"


def test_server_packages_are_pinned_by_the_lock():
    locked = {line.split("==")[0].lower() for line in (ROOT / "requirements" / "lock.txt")
              .read_text().splitlines() if "==" in line and not line.startswith("#")}
    run = next(r for r in of("RUN") if "pip install" in r)
    assert "-c /tmp/lock.txt" in run
    packages = [w for w in run.split("pip install", 1)[1].split("&&")[0].split()
                if not w.startswith("-") and not w.startswith("/")]
    assert {"scikit-learn", "skops", "uvicorn", "orjson", "prometheus-client"} <= set(packages)
    assert [p for p in packages if p.lower() not in locked] == []


def test_the_native_formats_runtimes_are_installed_with_lightgbms_openmp():
    run = next(r for r in of("RUN") if "pip install" in r)
    assert {"xgboost-cpu", "lightgbm", "onnx", "onnxruntime"} <= set(run.split())
    assert any("libgomp1" in r.split() for r in of("RUN") if "apt-get install" in r)
    portal_image = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    assert "libgomp1" in portal_image.split()  # the portal's workers load them too
    runtime = (ROOT / "requirements" / "runtime.txt").read_text()
    assert all(f"\n{name}==" in runtime for name in ("xgboost-cpu", "lightgbm", "onnxruntime"))


def test_runs_the_model_server_in_sagemaker_mode_on_port_8080():
    assert "8080" in of("EXPOSE")[0].split()
    assert json.loads(of("ENTRYPOINT")[0]) == ["python", "-m", "ops.serving"]
    command = json.loads(of("CMD")[0])
    assert command == ["serve"]
    assert parse_args(command).command == "serve"


@pytest.mark.parametrize("module", ["plan", "artifacts", "schema", "storage", "exceptions"])
def test_the_server_only_needs_ops(module):
    # ops/ must never import Django or the portal: the image has neither.
    source = (ROOT / "ops" / f"{module}.py").read_text()
    assert not re.search(r"^\s*(from|import)\s+(django|portal|workers)\b", source, re.M)


def test_serving_package_never_imports_django_or_the_portal():
    for path in [*(ROOT / "ops" / "serving").glob("*.py"), *(ROOT / "ops" / "native").glob("*.py")]:
        source = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+(django|portal|workers)\b", source, re.M), \
            path.name
