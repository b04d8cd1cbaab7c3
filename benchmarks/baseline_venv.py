"""The throwaway virtualenv that holds the baselines the benchmarks compare with: MLflow
(``mlflow models serve`` for ``serving.py``, ``mlflow server`` with a PostgreSQL backend
for ``registry_api.py``), FastAPI and uvicorn.

It lives outside the repository (``/tmp/modelgate-bench-venv``), is built once with uv (pip
when uv is missing) and reused while it still imports everything; none of it is a
dependency of the portal. scikit-learn and numpy are pinned to the portal's versions so a
model saved by one loads in the other.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_VENV = Path("/tmp/modelgate-bench-venv")
# psycopg (3) is the driver SQLAlchemy 2.1 (MLflow's store) picks for postgresql:// URIs.
PACKAGES = ["mlflow", "fastapi", "uvicorn[standard]", "psycopg[binary]"]
IMPORTS = "mlflow, fastapi, uvicorn, sklearn, psycopg"
ENV = {"MLFLOW_DISABLE_TELEMETRY": "true"}


def ensure_baseline_venv(venv: Path = BENCH_VENV, packages: tuple[str, ...] | list[str] = (),
                         imports: str = IMPORTS, *, quick: bool = False) -> Path | None:
    """The baseline virtualenv's python, built if it is missing or incomplete; None (and a
    message) when it cannot be installed, so a benchmark can still report its own side.

    ``venv``, ``packages`` and ``imports`` let the tests keep a smaller one of their own
    (``tests/integration/test_mlflow_import.py``: MLflow alone, cached under
    ~/.cache/modelgate); ``quick`` only looks the packages up rather than importing them
    (importing MLflow costs seconds of CPU on every test run)."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", f"import {imports}"]
    if quick:
        names = [name.strip() for name in imports.split(",")]
        check = [str(python), "-c", "import importlib.util, sys; sys.exit(any("
                 f"importlib.util.find_spec(n) is None for n in {names!r}))"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    import numpy
    import sklearn

    packages = [*(packages or PACKAGES), f"scikit-learn=={sklearn.__version__}",
                f"numpy=={numpy.__version__}"]
    print(f"creating {venv} and installing {' '.join(packages)} (a few minutes)...",
          flush=True)
    uv = ROOT / ".venv" / "bin" / "uv"
    env = {**os.environ, **ENV}
    try:
        if uv.exists():  # uv's pip is the same install, several times faster
            if not python.exists():
                subprocess.run([str(uv), "venv", "--python", sys.executable, str(venv)],
                               check=True, capture_output=True, env=env)
            subprocess.run([str(uv), "pip", "install", "--python", str(python), *packages],
                           check=True, capture_output=True, env=env)
        else:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True,
                           env=env)
    except subprocess.CalledProcessError as e:
        detail = (e.stderr or b"").decode(errors="replace")[-2000:]
        print(f"!! installing the baseline virtualenv failed: {detail}", flush=True)
        return None
    if subprocess.run(check, capture_output=True).returncode != 0:
        print(f"!! the baseline virtualenv does not import {imports}", flush=True)
        return None
    return python

