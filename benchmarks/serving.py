"""Throughput and latency of the model server against MLflow and a plain FastAPI app.

    .venv/bin/python benchmarks/serving.py [--duration 10] [--concurrency 8 32]

For a RandomForest (100 trees) and a StandardScaler + LogisticRegression pipeline fitted on
breast_cancer (30 named features), each server answers single-row requests from ``wrk`` (a
Lua script rotates 64 different rows) at each concurrency, one server at a time, every server
with ONE worker process:

- ours: ``python -m ops.serving`` (raw ASGI on uvicorn + uvloop + httptools, micro-batching);
- MLflow: ``mlflow models serve --env-manager local --workers 1`` of the same model saved with
  ``mlflow.sklearn.save_model`` (MLflow 3's default skops format, ``sklearn.tree._tree.Tree``
  trusted for the forest; ``predict_proba`` as the pyfunc);
- FastAPI: a plain FastAPI + uvicorn app (one worker) calling ``predict_proba`` per request,
  measured twice: a ``def`` endpoint (FastAPI runs it in its thread pool, as its docs advise
  for blocking calls) and an ``async def`` one (on the event loop); the ratio uses the faster.

MLflow and FastAPI live in their own virtualenv under /tmp (created on first run with the
same scikit-learn and numpy as ours, so the pickled models load identically), never in the
project's. wrk comes from Debian (``apt-get install -y wrk``); without it a Python asyncio
load generator in a separate process is used.

Printed: requests/s, p50 and p99 latency, non-2xx answers and the server's CPU time per
request (from /proc, summed over the server's process tree, steadier than requests/s on a
2-core machine shared with the load generator); the ratios ours/MLflow and ours/FastAPI at
the highest concurrency; and the in-process ``predict_proba`` floor of each model.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import joblib
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ops.artifacts import dump_skops  # noqa: E402
from ops.profile import profile_frame  # noqa: E402
from ops.storage import sha256_file  # noqa: E402

BENCH_VENV = Path("/tmp/modelgate-bench-venv")
ROWS_IN_SCRIPT = 64


@dataclass
class Result:
    server: str
    model: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int
    cpu_ms_per_request: float | None


# -- models ------------------------------------------------------------------------------------

def train_models() -> tuple[pd.DataFrame, dict]:
    data = load_breast_cancer(as_frame=True)
    frame = data.data.copy()
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    target = data.target
    models = {
        "RandomForest-100": RandomForestClassifier(n_estimators=100, random_state=0),
        "LogisticRegression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
    }
    for model in models.values():
        model.fit(frame, target)
    return frame, models


def inprocess_floor(frame: pd.DataFrame, model) -> dict:
    """Per-row cost of predict_proba: one numpy row, one DataFrame row, a batch of 32."""
    rows = frame.to_numpy()
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, make, per in (
            ("1 row numpy", lambda i: rows[i:i + 1], 1),
            ("1 row DataFrame", lambda i: frame.iloc[i:i + 1], 1),
            ("32 rows numpy (per row)", lambda i: rows[i:i + 32], 32),
            ("32 rows DataFrame (per row)", lambda i: frame.iloc[i:i + 32], 32),
        ):
            model.predict_proba(make(0))
            n = 0
            started = time.perf_counter()
            while time.perf_counter() - started < 1.0:
                model.predict_proba(make(n % 400))
                n += 1
            out[label] = (time.perf_counter() - started) / n / per * 1000.0
    return out


# -- the baseline virtualenv -----------------------------------------------------------------

def ensure_baseline_venv() -> Path | None:
    python = BENCH_VENV / "bin" / "python"
    check = [str(python), "-c", "import mlflow, fastapi, uvicorn, sklearn"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    import numpy
    import sklearn

    pins = [f"scikit-learn=={sklearn.__version__}", f"numpy=={numpy.__version__}"]
    packages = ["mlflow", "fastapi", "uvicorn[standard]", *pins]
    print(f"creating {BENCH_VENV} and installing {' '.join(packages)} (a few minutes)...",
          flush=True)
    uv = ROOT / ".venv" / "bin" / "uv"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    try:
        if uv.exists():  # uv's pip is the same install, several times faster
            subprocess.run([str(uv), "venv", "--python", sys.executable, str(BENCH_VENV)],
                           check=True, capture_output=True, env=env)
            subprocess.run([str(uv), "pip", "install", "--python", str(python), *packages],
                           check=True, capture_output=True, env=env)
        else:
            subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True,
                           env=env)
    except subprocess.CalledProcessError as e:
        detail = (e.stderr or b"").decode(errors="replace")[-2000:]
        print(f"!! installing the baseline virtualenv failed: {detail}", flush=True)
        return None
    if subprocess.run(check, capture_output=True).returncode != 0:
        print("!! the baseline virtualenv does not import mlflow/fastapi", flush=True)
        return None
    return python


FASTAPI_APP = textwrap.dedent('''
    """A plain FastAPI app: one predict_proba call per request, numpy row in."""
    import os
    import warnings

    import joblib
    import numpy as np
    from fastapi import FastAPI
    from pydantic import BaseModel

    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    model = joblib.load(os.environ["BENCH_MODEL"])
    app = FastAPI()


    class Row(BaseModel):
        data: list[float]


    @app.get("/ping")
    def ping():
        return {"ok": True}


    @app.post("/predict")
    def predict(row: Row):  # a sync endpoint: FastAPI runs it in its thread pool
        proba = model.predict_proba(np.asarray(row.data).reshape(1, -1))
        return {"predict_proba": proba.tolist()}


    @app.post("/predict-async")
    async def predict_async(row: Row):  # on the event loop: no thread hop, but it blocks
        proba = model.predict_proba(np.asarray(row.data).reshape(1, -1))
        return {"predict_proba": proba.tolist()}
''')

MLFLOW_SAVE = textwrap.dedent('''
    import sys
    import joblib
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature

    model = joblib.load(sys.argv[1])
    sample = pd.read_json(sys.argv[3], orient="split")
    signature = infer_signature(sample, model.predict_proba(sample))
    # MLflow 3's default format is skops; a forest's Tree type must be trusted explicitly.
    mlflow.sklearn.save_model(model, sys.argv[2], signature=signature,
                              pyfunc_predict_fn="predict_proba",
                              skops_trusted_types=["sklearn.tree._tree.Tree"])
''')


# -- servers -----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, name: str, argv: list[str], port: int, ready_path: str, log: Path,
                 env: dict | None = None, cwd: Path | None = None):
        self.name, self.port, self.ready_path = name, port, ready_path
        self.log = open(log, "wb")
        self.process = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                        env={**os.environ, **(env or {})}, cwd=cwd,
                                        start_new_session=True)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}{self.ready_path}"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; "
                                   f"see {self.log.name}")
            try:
                with urllib.request.urlopen(url, timeout=1) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout} s; see {self.log.name}")

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # its own session: our child only
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def tree_cpu_seconds(root: int) -> float:
    """user+system CPU of a process and all its descendants (threads included)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        total += times.get(pid, 0.0)
        stack.extend(p for p, parent in parents.items() if parent == pid)
    return total


# -- load generation ---------------------------------------------------------------------------

def lua_script(path: Path, url_path: str, bodies: list[str]) -> None:
    quoted = ",\n".join("[==[" + b + "]==]" for b in bodies)
    path.write_text(textwrap.dedent(f"""
        wrk.method = "POST"
        wrk.headers["Content-Type"] = "application/json"
        local bodies = {{
        {quoted}
        }}
        local i = 0
        request = function()
          i = i % #bodies + 1
          return wrk.format(nil, "{url_path}", nil, bodies[i])
        end
    """))


def parse_duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(port: int, script: Path, concurrency: int, duration: float) -> dict:
    argv = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s", "--timeout", "5s", "--latency",
            "-s", str(script), f"http://127.0.0.1:{port}"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = parse_duration_ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = parse_duration_ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", out)
    errors = sum(int(g) for g in socket_errors.groups()) if socket_errors else 0
    return {"rps": rps, "p50": p50, "p99": p99, "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "errors": errors}


PY_LOADGEN = textwrap.dedent('''
    """Fallback load generator: asyncio + aiohttp, closed loop, N concurrent clients."""
    import asyncio, json, sys, time
    import aiohttp

    async def main(url, bodies, concurrency, duration):
        latencies, bad = [], 0
        stop = time.perf_counter() + duration
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
            async def client(k):
                nonlocal bad
                i = k
                while time.perf_counter() < stop:
                    t = time.perf_counter()
                    async with s.post(url, data=bodies[i % len(bodies)],
                                      headers={"Content-Type": "application/json"}) as r:
                        await r.read()
                        bad += r.status >= 300
                    latencies.append(time.perf_counter() - t)
                    i += 1
            started = time.perf_counter()
            await asyncio.gather(*(client(k) for k in range(concurrency)))
            elapsed = time.perf_counter() - started
        latencies.sort()
        q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000
        print(json.dumps({"rps": len(latencies) / elapsed, "p50": q(0.5), "p99": q(0.99),
                          "non2xx": bad, "errors": 0}))

    url, path, c, d = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    asyncio.run(main(url, json.load(open(path)), c, d))
''')


def run_python_loadgen(port: int, url_path: str, bodies_file: Path, concurrency: int,
                       duration: float, workdir: Path) -> dict:
    script = workdir / "loadgen.py"
    script.write_text(PY_LOADGEN)
    out = subprocess.run([sys.executable, str(script), f"http://127.0.0.1:{port}{url_path}",
                          str(bodies_file), str(concurrency), str(duration)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


# -- main --------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--skip-baselines", action="store_true",
                        help="measure only our server")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="modelgate-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    use_wrk = shutil.which("wrk") is not None
    print(f"work directory {workdir}; load generator: "
          f"{'wrk (1 thread)' if use_wrk else 'python asyncio (wrk not installed)'}", flush=True)
    frame, models = train_models()
    rows = frame.to_numpy()
    columns = list(frame.columns)
    sample = rows[:ROWS_IN_SCRIPT]

    baseline_python = None if args.skip_baselines else ensure_baseline_venv()
    baseline_note = None
    if not args.skip_baselines and baseline_python is None:
        baseline_note = "MLflow/FastAPI virtualenv could not be installed (see above)"

    results: list[Result] = []
    floors: dict[str, dict] = {}
    profile = profile_frame(frame)
    for model_name, model in models.items():
        floors[model_name] = inprocess_floor(frame, model)
        slug = model_name.lower().replace("-", "")
        skops_path = workdir / f"{slug}.skops"
        skops_path.write_bytes(dump_skops(model))
        plan = {"endpoint": slug, "generation": 1, "variants": [{
            "name": "v1", "version_id": 1, "artifact_uri": f"file://{skops_path}",
            "sha256": sha256_file(skops_path), "weight": 1.0,
            "input_schema": [{"name": c, "type": "double"} for c in columns],
            "baseline": profile}]}
        plan_path = workdir / f"{slug}-plan.json"
        plan_path.write_text(json.dumps(plan))
        pickle_path = workdir / f"{slug}.joblib"
        joblib.dump(model, pickle_path)

        # (name, url path, request bodies, argv with {port}, ready path, extra env, cwd)
        targets = []
        ours_bodies = [json.dumps({"inputs": [{"name": "input-0", "shape": [1, len(columns)],
                                               "datatype": "FP64", "data": r.tolist()}]})
                       for r in sample]
        targets.append(("ours", f"/v2/models/{slug}/infer", ours_bodies,
                        [sys.executable, "-m", "ops.serving", "--plan", str(plan_path),
                         "--port", "{port}", "--log-level", "warning"],
                        "/v2/health/ready", {}, ROOT))
        if baseline_python is not None:
            mlflow_dir = workdir / f"mlflow-{slug}"
            if not mlflow_dir.exists():
                sample_json = workdir / "sample.json"
                frame.head(20).to_json(sample_json, orient="split")
                (workdir / "mlflow_save.py").write_text(MLFLOW_SAVE)
                saved = subprocess.run(
                    [str(baseline_python), str(workdir / "mlflow_save.py"), str(pickle_path),
                     str(mlflow_dir), str(sample_json)],
                    env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}, capture_output=True,
                    text=True)
                if saved.returncode != 0:
                    raise SystemExit(f"saving the MLflow model failed:\n{saved.stderr[-3000:]}")
            mlflow_bodies = [json.dumps({"dataframe_split": {"columns": columns,
                                                             "data": [r.tolist()]}})
                             for r in sample]
            targets.append(("MLflow", "/invocations", mlflow_bodies,
                            [str(baseline_python.parent / "mlflow"), "models", "serve", "-m",
                             str(mlflow_dir), "-p", "{port}", "--env-manager", "local",
                             "--workers", "1"],
                            "/ping", {"MLFLOW_DISABLE_TELEMETRY": "true",
                                      # it starts `uvicorn` from PATH
                                      "PATH": f"{baseline_python.parent}:{os.environ['PATH']}"},
                            None))
            (workdir / "fastapi_app.py").write_text(FASTAPI_APP)
            fastapi_bodies = [json.dumps({"data": r.tolist()}) for r in sample]
            for label, route in (("FastAPI", "/predict"), ("FastAPI-async", "/predict-async")):
                targets.append((label, route, fastapi_bodies,
                                [str(baseline_python), "-m", "uvicorn", "fastapi_app:app",
                                 "--port", "{port}", "--workers", "1", "--no-access-log",
                                 "--log-level", "warning"],
                                "/ping", {"BENCH_MODEL": str(pickle_path)}, workdir))

        for server_name, url_path, bodies, argv, ready_path, env, cwd in targets:
            script = workdir / f"{server_name}-{slug}.lua"
            lua_script(script, url_path, bodies)
            bodies_file = workdir / f"{server_name}-{slug}.json"
            bodies_file.write_text(json.dumps(bodies))
            port = free_port()
            server = Server(server_name, [a.replace("{port}", str(port)) for a in argv], port,
                            ready_path, workdir / f"{server_name.lower()}-{slug}.log", env=env,
                            cwd=cwd)
            try:
                server.wait_ready()
                check_answer(port, url_path, bodies[0], server_name)

                def load(c, d, port=port, script=script, url_path=url_path,
                         bodies_file=bodies_file):
                    if use_wrk:
                        return run_wrk(port, script, c, d)
                    return run_python_loadgen(port, url_path, bodies_file, c, d, workdir)

                load(max(args.concurrency), args.warmup)
                for concurrency in args.concurrency:
                    cpu_before = server.cpu_seconds()
                    measured = load(concurrency, args.duration)
                    cpu = server.cpu_seconds() - cpu_before
                    requests = measured["rps"] * args.duration
                    results.append(Result(server_name, model_name, concurrency, measured["rps"],
                                          measured["p50"], measured["p99"], measured["non2xx"],
                                          measured["errors"],
                                          cpu / requests * 1000.0 if requests else None))
                    print(f"  {server_name:13s} {model_name:19s} c={concurrency:<3d} "
                          f"{measured['rps']:8.1f} req/s", flush=True)
            except Exception as e:  # noqa: BLE001 - report and go on with the others
                print(f"!! {server_name} / {model_name}: {e}", flush=True)
            finally:
                server.stop()

    report(results, floors, max(args.concurrency), baseline_note)


def check_answer(port: int, url_path: str, body: str, server_name: str) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{url_path}", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        payload = answer.read()
    if b"0." not in payload:
        raise RuntimeError(f"{server_name} answered without probabilities: {payload[:200]!r}")


def report(results: list[Result], floors: dict, top: int, note: str | None) -> None:
    print()
    print(f"{'server':13s} {'model':19s} {'conc':>4s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} "
          f"{'non-2xx':>7s} {'sock err':>8s} {'CPU ms/req':>10s}")
    for r in results:
        cpu = f"{r.cpu_ms_per_request:10.2f}" if r.cpu_ms_per_request is not None else " " * 10
        print(f"{r.server:13s} {r.model:19s} {r.concurrency:4d} {r.rps:9.1f} {r.p50_ms:8.2f} "
              f"{r.p99_ms:8.2f} {r.non_2xx:7d} {r.errors:8d} {cpu}")
    print()
    by = {(r.server, r.model, r.concurrency): r for r in results}
    for model in dict.fromkeys(r.model for r in results):
        ours = by.get(("ours", model, top))
        if ours is None:
            continue
        fastapi = [r for r in (by.get((n, model, top)) for n in ("FastAPI", "FastAPI-async")) if r]
        best_fastapi = max(fastapi, key=lambda r: r.rps) if fastapi else None
        for other, theirs in (("MLflow", by.get(("MLflow", model, top))),
                              ("FastAPI", best_fastapi)):
            if theirs is None:
                print(f"{model}: ours/{other} at c={top}: not measured")
                continue
            print(f"{model}: ours/{theirs.server} at c={top}: throughput "
                  f"x{ours.rps / theirs.rps:.1f} ({ours.rps:.0f} vs {theirs.rps:.0f} req/s), "
                  f"p99 {ours.p99_ms:.1f} ms vs {theirs.p99_ms:.1f} ms")
    if note:
        print(f"note: {note}")
    print()
    print("in-process predict_proba floor (ms per row):")
    for model, floor in floors.items():
        print(f"  {model:19s} " + ", ".join(f"{k}: {v:.3f}" for k, v in floor.items()))


if __name__ == "__main__":
    main()
