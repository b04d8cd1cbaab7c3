"""A multi-model endpoint under load: 200 registered models, a warm working set and cold loads.

    .venv/bin/python benchmarks/multimodel.py [--models 200] [--working-set 20]
        [--budget-models 30] [--duration 10] [--concurrency 16]

Trains ``--models`` tiny classifiers (LogisticRegression, 5 features, one per "customer"),
writes them as skops files and a catalog whose memory budget holds ``--budget-models`` of
them at the portal's stated estimate (``estimate_loaded_bytes``), starts ONE
``python -m ops.serving --catalog`` process through the local multi-model backend (decision
68) and drives it with ``wrk`` (single-row OIP requests, a Lua script rotating the model in
the path; Python's asyncio load generator when wrk is absent):

- warm: the working set (``--working-set`` models, which fit the budget), loaded first, then
  ``--duration`` seconds of requests spread over it: requests/s and p50/p99;
- cold: the same over all the models in a shuffled order, so most requests name a model that
  is not loaded (load, checksum, probe, evict the least recently used): requests/s, p99, and
  loads and evictions per second from the server's own counters.

The server's resident memory (VmRSS, sampled every 50 ms from /proc) is measured after start,
before any model is loaded, and at its peak: PASS when the growth stays within the memory
budget, FAIL otherwise. Also printed: the server's accounted bytes (what the LRU counts).
The machine is shared: read requests/s as a floor, and rerun when in doubt.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from serving import free_port, run_python_loadgen, run_wrk  # noqa: E402

from ops.artifacts import dump_skops  # noqa: E402
from ops.backends.multimodel import get_multimodel_backend  # noqa: E402
from ops.plan import Variant  # noqa: E402
from ops.serving.multimodel import Catalog, CatalogModel, estimate_loaded_bytes  # noqa: E402

FEATURES = ["f0", "f1", "f2", "f3", "f4"]
ENDPOINT = "mme-benchmark"


def build_catalog(folder: Path, count: int, budget_models: int) -> Catalog:
    rng = np.random.default_rng(0)
    models = {}
    for i in range(count):
        X = rng.normal(size=(60, len(FEATURES)))
        y = (X @ rng.normal(size=len(FEATURES)) > 0).astype(int)
        data = dump_skops(LogisticRegression().fit(X, y))
        path = folder / f"customer-{i:03d}.skops"
        path.write_bytes(data)
        spec = Variant(name=f"customer-{i:03d}", version_id=i + 1, version_number=1,
                       artifact_uri=f"file://{path}", sha256=hashlib.sha256(data).hexdigest(),
                       weight=1.0, task="classification",
                       input_schema=[{"name": f, "type": "double"} for f in FEATURES])
        models[spec.name] = CatalogModel(spec, estimate_loaded_bytes(len(data)))
    per_model = max(m.memory_bytes for m in models.values())
    return Catalog(ENDPOINT, models, memory_budget=per_model * budget_models, top_models=20)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class PeakRss:
    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def lua_rotating(path: Path, names: list[str], body: str) -> None:
    quoted = ",".join(f'"/v2/models/{n}/infer"' for n in names)
    path.write_text(f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local paths = {{{quoted}}}
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format(nil, paths[i], nil, [==[{body}]==])
end
""")


def drive(port: int, names: list[str], args, work: Path) -> dict:
    body = json.dumps({"instances": [[0.1, -0.2, 0.3, 0.5, -1.0]]})
    if shutil.which("wrk"):
        script = work / "rotate.lua"
        lua_rotating(script, names, body)
        return run_wrk(port, script, args.concurrency, args.duration)
    # Fallback: one model per run of the Python generator cannot rotate paths; use the first.
    bodies = work / "bodies.json"
    bodies.write_text(json.dumps([body]))
    return run_python_loadgen(port, f"/v2/models/{names[0]}/infer", bodies, args.concurrency,
                              args.duration, work)


def events(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("modelgate_multimodel_events_total{"):
            event = line.split('event="', 1)[1].split('"', 1)[0]
            found[event] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("modelgate_multimodel_loaded_bytes{"):
            found["loaded_bytes"] = float(line.rsplit(" ", 1)[1])
    return found


def warm_up(url: str, names: list[str]) -> None:
    body = json.dumps({"instances": [[0.1, -0.2, 0.3, 0.5, -1.0]]}).encode()
    for name in names:
        request = urllib.request.Request(f"{url}/v2/models/{name}/infer", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--working-set", type=int, default=20)
    parser.add_argument("--budget-models", type=int, default=30,
                        help="models the memory budget holds at the stated estimate")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="modelgate-mme-bench-"))
    started = time.perf_counter()
    catalog = build_catalog(work, args.models, args.budget_models)
    print(f"{args.models} models trained and written in {time.perf_counter() - started:.1f} s; "
          f"budget {catalog.memory_budget / 2**20:.1f} MiB "
          f"({args.budget_models} models at the stated estimate)")
    port = free_port()
    backend = get_multimodel_backend("local", {"state_dir": str(work / "serving"),
                                               "ports": {ENDPOINT: port},
                                               "ready_timeout": 120})
    try:
        state = backend.apply_catalog(catalog)
        pid = backend.servers.running(ENDPOINT)
        baseline = rss_bytes(pid)
        names = sorted(catalog.models)
        working = names[:args.working_set]
        with PeakRss(pid) as peak:
            warm_up(state.url, working)
            before = events(state.url)
            warm = drive(port, working, args, work)
            after_warm = events(state.url)
            shuffled = names[:]
            random.Random(1).shuffle(shuffled)
            cold = drive(port, shuffled, args, work)
            after_cold = events(state.url)
        report(args, catalog, baseline, peak.peak, warm, cold, before, after_warm, after_cold)
    finally:
        backend.delete_catalog(ENDPOINT)
        shutil.rmtree(work, ignore_errors=True)


def report(args, catalog, baseline, peak, warm, cold, before, after_warm, after_cold) -> None:
    mib = 2 ** 20
    print(f"\n{'phase':<34} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} "
          f"{'loads/s':>8} {'evict/s':>8}")
    for label, result, start, end in (
            (f"warm: {args.working_set} of {args.models} models", warm, before, after_warm),
            (f"cold: all {args.models}, shuffled", cold, after_warm, after_cold)):
        loads = (end.get("load", 0) - start.get("load", 0)) / args.duration
        evictions = (end.get("evict", 0) - start.get("evict", 0)) / args.duration
        print(f"{label:<34} {result['rps']:>8.0f} {result['p50']:>8.1f} {result['p99']:>8.1f} "
              f"{result['non2xx'] + result['errors']:>8} {loads:>8.1f} {evictions:>8.1f}")
    growth = peak - baseline
    verdict = "PASS" if growth <= catalog.memory_budget else "FAIL"
    print(f"\nserver RSS: {baseline / mib:.1f} MiB after start, peak {peak / mib:.1f} MiB "
          f"(+{growth / mib:.1f} MiB); budget {catalog.memory_budget / mib:.1f} MiB; "
          f"accounted at the end {after_cold.get('loaded_bytes', 0) / mib:.1f} MiB")
    print(f"{verdict}: the model server's memory growth "
          f"{'stays within' if verdict == 'PASS' else 'exceeds'} its budget")


if __name__ == "__main__":
    main()
