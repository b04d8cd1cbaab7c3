"""Throughput and latency of the model server against MLServer, MLflow and plain FastAPI.

    .venv/bin/python benchmarks/serving.py [--duration 10] [--concurrency 8 32]
        [--models RandomForest-100] [--servers ours MLServer]

For a RandomForest (100 trees) and a StandardScaler + LogisticRegression pipeline fitted on
breast_cancer (30 named features), and beside them an XGBoost classifier (100 trees, saved
as XGBoost JSON) and the logistic pipeline converted to ONNX (skl2onnx; onnxruntime), each
server answers single-row requests from ``wrk`` (a
Lua script rotates 64 different rows) at each concurrency, one server at a time, every server
with ONE worker process:

- ours: ``python -m ops.serving`` (raw ASGI on uvicorn + uvloop + httptools, micro-batching;
  a tree ensemble through onnxruntime when proven exact at load, decision 63); ``ours-plain``
  is the same server with that fast path off (``MODELGATE_FAST_TREES=off``);
- MLServer: Seldon MLServer with its scikit-learn runtime (what KServe runs for
  scikit-learn), adaptive batching on at its fastest setting here (32 rows, 10 ms;
  ``--mlserver-batch``), ``parallel_workers: 0`` (one process, its best setting on two
  cores), asked for ``predict_proba``;
- MLflow: ``mlflow models serve --env-manager local --workers 1`` of the same model saved with
  ``mlflow.sklearn.save_model`` (MLflow 3's default skops format, ``sklearn.tree._tree.Tree``
  trusted for the forest; ``predict_proba`` as the pyfunc); the XGBoost booster with
  ``mlflow.xgboost.save_model`` (its pyfunc answers the probability of class 1) and the ONNX
  graph with ``mlflow.onnx.save_model`` (the baseline virtualenv then also holds xgboost-cpu,
  onnx and onnxruntime at our versions);
- FastAPI: a plain FastAPI + uvicorn app (one worker) calling ``predict_proba`` per request,
  measured twice: a ``def`` endpoint (FastAPI runs it in its thread pool, as its docs advise
  for blocking calls) and an ``async def`` one (on the event loop); the ratio uses the faster.
  It loads the joblib pickle (the XGBoost model as ``XGBClassifier``) or, for ONNX, opens an
  onnxruntime session on the graph.

MLflow and FastAPI live in their own virtualenv under /tmp, MLServer in another (MLServer
pins its own FastAPI), each created on first run with the same scikit-learn and numpy as
ours, so the pickled models load identically; never in the project's. wrk comes from
Debian (``apt-get install -y wrk``); without it a Python asyncio
load generator in a separate process is used.

Printed: requests/s, p50 and p99 latency, non-2xx answers and the server's CPU time per
request (from /proc, summed over the server's process tree, steadier than requests/s on a
2-core machine shared with the load generator); the ratios ours/MLflow and ours/FastAPI at
the highest concurrency; and the in-process ``predict_proba`` floor of each model. Before
the load, ours and MLServer answer every row of the data set and rows placed on the forest's
split points in one request each, compared with scikit-learn's own answers in this process.
Then the verdict for the RandomForest (issue 20): ours at least twice MLServer's requests/s
at the highest concurrency, CPU per request within three times the batched floor (scikit-
learn's ``predict_proba`` on 100 rows, per row), identical labels: PASS or FAIL.
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
import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from baseline_venv import IMPORTS as BASELINE_IMPORTS  # noqa: E402
from baseline_venv import PACKAGES as BASELINE_PACKAGES  # noqa: E402
from baseline_venv import ensure_baseline_venv  # noqa: E402 - shared with registry_api.py

from ops.artifacts import dump_skops  # noqa: E402
from ops.profile import profile_frame  # noqa: E402
from ops.serving.fastpath import edge_rows  # noqa: E402
from ops.storage import sha256_file  # noqa: E402

ROWS_IN_SCRIPT = 64
MLSERVER_VENV = Path("/tmp/modelgate-mlserver-venv")
MLSERVER_BATCH = (32, 10.0)  # its fastest of seven tried here (16-64 rows, 2-20 ms)
SERVERS = ("ours", "ours-plain", "MLServer", "MLflow", "FastAPI", "FastAPI-async")
FLOOR = "100 rows numpy (per row)"  # the batched in-process floor the verdict compares with
SKLEARN_MODELS = ("RandomForest-100", "LogisticRegression")


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
    import xgboost

    models["XGBoost-100"] = xgboost.XGBClassifier(n_estimators=100, max_depth=6,
                                                  random_state=0).fit(frame, target)
    models["ONNX-LogReg"] = models["LogisticRegression"]  # converted when saved
    return frame, models


def save_artifacts(model_name: str, model, frame: pd.DataFrame, workdir: Path,
                   slug: str) -> tuple[Path, Path]:
    """(what our server loads, what FastAPI loads): skops and a joblib pickle for
    scikit-learn; XGBoost JSON and a pickle of the XGBClassifier; the ONNX graph for both."""
    pickle_path = workdir / f"{slug}.joblib"
    if model_name.startswith("ONNX"):
        from skl2onnx import to_onnx

        path = workdir / f"{slug}.onnx"
        rows32 = frame.to_numpy(dtype="float32")
        path.write_bytes(to_onnx(model, rows32[:1], options={"zipmap": False})
                         .SerializeToString())
        return path, path
    joblib.dump(model, pickle_path)
    if model_name.startswith("XGBoost"):
        path = workdir / f"{slug}.json"
        model.save_model(path)
        return path, pickle_path
    path = workdir / f"{slug}.skops"
    path.write_bytes(dump_skops(model))
    return path, pickle_path


def floor_model(model_name: str, model, artifact: Path):
    """What our server predicts with: the native adapter for XGBoost and ONNX."""
    if model_name.startswith(("XGBoost", "ONNX")):
        from ops.native import load_native

        return load_native(artifact)
    return model


def native_pins() -> list[str]:
    """Our versions of the XGBoost and ONNX runtimes, for MLflow's flavours of them."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("xgboost-cpu", "onnx", "onnxruntime")]


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
            (FLOOR, lambda i: rows[i:i + 100], 100),
        ):
            model.predict_proba(make(0))
            n = 0
            started = time.perf_counter()
            while time.perf_counter() - started < 1.0:
                model.predict_proba(make(n % 400 if per < 100 else n % 300))
                n += 1
            out[label] = (time.perf_counter() - started) / n / per * 1000.0
    return out


FASTAPI_APP = textwrap.dedent('''
    """A plain FastAPI app: one predict_proba call per request, numpy row in."""
    import os
    import warnings

    import joblib
    import numpy as np
    from fastapi import FastAPI
    from pydantic import BaseModel

    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    if os.environ["BENCH_MODEL"].endswith(".onnx"):
        import onnxruntime

        class OnnxProba:  # the graph's second output: probabilities
            def __init__(self, path):
                self.session = onnxruntime.InferenceSession(path)
                self.input = self.session.get_inputs()[0].name

            def predict_proba(self, x):
                return self.session.run(None, {self.input: x.astype(np.float32)})[1]

        model = OnnxProba(os.environ["BENCH_MODEL"])
    else:
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

    sample = pd.read_json(sys.argv[3], orient="split")
    if sys.argv[1].endswith(".onnx"):  # the graph itself; a float32 tensor signature, so
        import mlflow.onnx  # MLflow casts the JSON numbers (it refuses float64 columns)
        import onnx

        mlflow.onnx.save_model(onnx.load(sys.argv[1]), sys.argv[2],
                               signature=infer_signature(sample.to_numpy(dtype="float32")))
        sys.exit()
    if sys.argv[1].endswith(".json"):  # the XGBoost booster: its pyfunc answers P(class 1)
        import mlflow.xgboost
        import xgboost

        booster = xgboost.Booster(model_file=sys.argv[1])
        mlflow.xgboost.save_model(booster, sys.argv[2], signature=infer_signature(sample))
        sys.exit()
    model = joblib.load(sys.argv[1])
    signature = infer_signature(sample, model.predict_proba(sample))
    # MLflow 3's default format is skops; a forest's Tree type must be trusted explicitly.
    mlflow.sklearn.save_model(model, sys.argv[2], signature=signature,
                              pyfunc_predict_fn="predict_proba",
                              skops_trusted_types=["sklearn.tree._tree.Tree"])
''')


def mlserver_target(workdir: Path, slug: str, pickle_path: Path, sample: np.ndarray,
                    batch_rows: int, batch_seconds: float) -> tuple | None:
    """Seldon MLServer serving the joblib file with its scikit-learn runtime: adaptive
    batching, ``parallel_workers: 0`` (inference in the server's own process, its fastest on
    two cores), no debug logging; ``None`` when its virtualenv cannot be built."""
    python = ensure_baseline_venv(MLSERVER_VENV, ["mlserver", "mlserver-sklearn"],
                                  "mlserver, mlserver_sklearn, sklearn")
    if python is None:
        return None
    folder = workdir / f"mlserver-{slug}"
    folder.mkdir(exist_ok=True)
    shutil.copy(pickle_path, folder / "model.joblib")
    (folder / "settings.json").write_text(json.dumps({"parallel_workers": 0, "debug": False}))
    (folder / "model-settings.json").write_text(json.dumps({
        "name": slug, "implementation": "mlserver_sklearn.SKLearnModel",
        "max_batch_size": int(batch_rows), "max_batch_time": batch_seconds,
        "parameters": {"uri": "./model.joblib", "version": "v1"}}))
    bodies = [json.dumps({"inputs": [{"name": "input-0", "shape": [1, len(r)],
                                      "datatype": "FP64", "data": r.tolist()}],
                          "outputs": [{"name": "predict_proba"}]}) for r in sample]
    # Ports through MLServer's environment settings; "{port}" is filled in per run.
    env = {"MLSERVER_HTTP_PORT": "{port}", "MLSERVER_GRPC_PORT": str(free_port()),
           "MLSERVER_METRICS_PORT": str(free_port())}
    return ("MLServer", f"/v2/models/{slug}/infer", bodies,
            [str(python.parent / "mlserver"), "start", str(folder)], "/v2/health/ready", env,
            folder)


def served_answers(port: int, url_path: str, rows: np.ndarray,
                   extra: dict) -> tuple[np.ndarray | None, np.ndarray]:
    """(labels if the server sends them, probabilities) for ``rows`` in one OIP request."""
    body = {"inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP64",
                        "data": rows.ravel().tolist()}], **extra}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{url_path}",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        outputs = {o["name"]: o["data"] for o in json.loads(answer.read())["outputs"]}
    labels = np.asarray(outputs["predict"]) if "predict" in outputs else None
    return labels, np.asarray(outputs["predict_proba"], dtype=float).reshape(len(rows), -1)


def check_predictions(port: int, url_path: str, rows: np.ndarray, model,
                      extra: dict) -> dict:
    """The server's labels and probabilities against scikit-learn's in this process."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = model.predict_proba(rows)
        expected_labels = model.predict(rows)
    labels, proba = served_answers(port, url_path, rows, extra)
    if labels is None:  # MLServer's predict_proba: the labels are its arg-max
        labels = model.classes_[proba.argmax(axis=1)]
    return {"rows": len(rows),
            "labels_identical": bool(np.array_equal(labels, expected_labels)),
            "proba_max_diff": float(np.abs(proba - expected).max())}


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
        -- Each request is formatted once, in init: wrk has set the Host header by then
        -- (formatted at load, the requests had none, and servers holding to HTTP/1.1
        -- refused every one).
        local requests = {{}}
        function init(args)
          for n, body in ipairs(bodies) do
            requests[n] = wrk.format(nil, "{url_path}", nil, body)
          end
        end
        local i = 0
        request = function()
          i = i % #requests + 1
          return requests[i]
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
    parser.add_argument("--servers", nargs="+", default=list(SERVERS), choices=SERVERS,
                        help="measure only these")
    parser.add_argument("--mlserver-batch", nargs=2, type=float, default=MLSERVER_BATCH,
                        metavar=("ROWS", "MS"), help="MLServer's max_batch_size and "
                        "max_batch_time in ms (default: %(default)s, its fastest here)")
    parser.add_argument("--models", nargs="+", default=None,
                        help="measure only these (RandomForest-100, LogisticRegression, "
                             "XGBoost-100, ONNX-LogReg)")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="modelgate-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    use_wrk = shutil.which("wrk") is not None
    print(f"load average {load_average()}; work directory {workdir}; load generator: "
          f"{'wrk (1 thread)' if use_wrk else 'python asyncio (wrk not installed)'}", flush=True)
    frame, models = train_models()
    if args.models:
        models = {name: models[name] for name in args.models}
    rows = frame.to_numpy()
    columns = list(frame.columns)
    sample = rows[:ROWS_IN_SCRIPT]

    wanted = {"MLflow", "FastAPI", "FastAPI-async"} & set(args.servers)
    baseline_python = None if args.skip_baselines or not wanted else ensure_baseline_venv(
        packages=[*BASELINE_PACKAGES, *native_pins()],
        imports=BASELINE_IMPORTS + ", xgboost, onnx, onnxruntime")
    baseline_note = None
    if not args.skip_baselines and wanted and baseline_python is None:
        baseline_note = "MLflow/FastAPI virtualenv could not be installed (see above)"

    results: list[Result] = []
    checks: dict[tuple[str, str], dict] = {}
    floors: dict[str, dict] = {}
    profile = profile_frame(frame)
    for model_name, model in models.items():
        slug = model_name.lower().replace("-", "")
        skops_path, pickle_path = save_artifacts(model_name, model, frame, workdir, slug)
        floors[model_name] = inprocess_floor(frame, floor_model(model_name, model, skops_path))
        plan = {"endpoint": slug, "generation": 1, "variants": [{
            "name": "v1", "version_id": 1, "artifact_uri": f"file://{skops_path}",
            "sha256": sha256_file(skops_path), "weight": 1.0,
            "input_schema": [{"name": c, "type": "double"} for c in columns],
            "baseline": profile}]}
        plan_path = workdir / f"{slug}-plan.json"
        plan_path.write_text(json.dumps(plan))

        # (name, url path, request bodies, argv with {port}, ready path, extra env, cwd)
        targets = []
        ours_bodies = [json.dumps({"inputs": [{"name": "input-0", "shape": [1, len(columns)],
                                               "datatype": "FP64", "data": r.tolist()}]})
                       for r in sample]
        targets.append(("ours", f"/v2/models/{slug}/infer", ours_bodies,
                        [sys.executable, "-m", "ops.serving", "--plan", str(plan_path),
                         "--port", "{port}", "--log-level", "warning"],
                        "/v2/health/ready", {}, ROOT))
        targets.append(("ours-plain", *targets[0][1:5], {"MODELGATE_FAST_TREES": "off"}, ROOT))
        if "MLServer" in args.servers and not args.skip_baselines and \
                hasattr(model, "predict_proba") and not model_name.startswith(("XGBoost", "ONNX")):
            mlserver = mlserver_target(workdir, slug, pickle_path, sample,
                                       args.mlserver_batch[0], args.mlserver_batch[1] / 1000)
            if mlserver is not None:
                targets.append(mlserver)
        if baseline_python is not None:
            mlflow_dir = workdir / f"mlflow-{slug}"
            if not mlflow_dir.exists():
                sample_json = workdir / "sample.json"
                frame.head(20).to_json(sample_json, orient="split")
                (workdir / "mlflow_save.py").write_text(MLFLOW_SAVE)
                saved = subprocess.run(
                    [str(baseline_python), str(workdir / "mlflow_save.py"),
                     str(pickle_path if skops_path.suffix == ".skops" else skops_path),
                     str(mlflow_dir), str(sample_json)],
                    env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}, capture_output=True,
                    text=True)
                if saved.returncode != 0:
                    raise SystemExit(f"saving the MLflow model failed:\n{saved.stderr[-3000:]}")
            mlflow_bodies = [json.dumps({"dataframe_split": {"columns": columns,
                                                             "data": [r.tolist()]}})
                             if skops_path.suffix != ".onnx" else
                             json.dumps({"inputs": [r.tolist()]})  # its tensor signature
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
            if server_name not in args.servers:
                continue
            script = workdir / f"{server_name}-{slug}.lua"
            lua_script(script, url_path, bodies)
            bodies_file = workdir / f"{server_name}-{slug}.json"
            bodies_file.write_text(json.dumps(bodies))
            port = free_port()
            server = Server(server_name, [a.replace("{port}", str(port)) for a in argv], port,
                            ready_path, workdir / f"{server_name.lower()}-{slug}.log",
                            env={k: v.replace("{port}", str(port)) for k, v in env.items()},
                            cwd=cwd)
            try:
                server.wait_ready()
                check_answer(port, url_path, bodies[0], server_name)
                if server_name in ("ours", "ours-plain", "MLServer") and \
                        model_name in SKLEARN_MODELS:
                    check_rows = np.concatenate([rows, edge_rows(model, rows[:16])])
                    extra = json.loads(bodies[0]).get("outputs")
                    checks[(server_name, model_name)] = check_predictions(
                        port, url_path, check_rows, model, {"outputs": extra} if extra else {})

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
    verdict(results, floors, checks, max(args.concurrency))


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
        for other, theirs in (("MLServer", by.get(("MLServer", model, top))),
                              ("MLflow", by.get(("MLflow", model, top))),
                              ("FastAPI", best_fastapi)):
            if theirs is None:
                print(f"{model}: ours/{other} at c={top}: not measured")
                continue
            if theirs.non_2xx or theirs.errors:
                # Requests per second of a server answering errors are not a throughput.
                print(f"{model}: ours/{theirs.server} at c={top}: not comparable, "
                      f"{theirs.server} answered {theirs.non_2xx} errors and "
                      f"{theirs.errors} socket errors (see its log in the work directory)")
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


def verdict(results: list[Result], floors: dict, checks: dict, top: int) -> bool:
    """Issue 20's target for the RandomForest, from this run alone: PASS or FAIL."""
    print()
    for (server, model), check in checks.items():
        print(f"predictions of {server} for {model}: labels "
              f"{'identical to' if check['labels_identical'] else 'DIFFERENT from'} "
              f"scikit-learn's on {check['rows']} rows (data set and split points), "
              f"probabilities within {check['proba_max_diff']:.2g}")
    model = "RandomForest-100"
    by = {(r.server, r.model, r.concurrency): r for r in results}
    ours, theirs = by.get(("ours", model, top)), by.get(("MLServer", model, top))
    floor = floors.get(model, {}).get(FLOOR)
    if ours is None or theirs is None or floor is None or ("ours", model) not in checks:
        print(f"verdict ({model}): not measured (needs ours and MLServer at c={top})")
        return False
    if theirs.non_2xx or theirs.errors or ours.errors:
        print(f"verdict ({model}, c={top}): FAIL: not comparable (MLServer answered "
              f"{theirs.non_2xx} errors, {theirs.errors} socket errors; ours "
              f"{ours.non_2xx} and {ours.errors}); load average {load_average()}")
        return False
    ratio = ours.rps / theirs.rps
    cpu_ratio = ours.cpu_ms_per_request / floor if ours.cpu_ms_per_request else float("inf")
    same = checks[("ours", model)]["labels_identical"]
    ok = ratio >= 2.0 and cpu_ratio <= 3.0 and same and ours.non_2xx == 0
    print(f"verdict ({model}, c={top}): {'PASS' if ok else 'FAIL'}: "
          f"x{ratio:.2f} MLServer's requests/s (target >= 2), p99 {ours.p99_ms:.1f} ms vs "
          f"{theirs.p99_ms:.1f} ms; CPU {ours.cpu_ms_per_request:.3f} ms a request = "
          f"x{cpu_ratio:.2f} the batched floor of {floor:.3f} ms a row (target <= 3); "
          f"labels {'identical' if same else 'DIFFERENT'}; load average {load_average()}")
    return ok


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


if __name__ == "__main__":
    main()
