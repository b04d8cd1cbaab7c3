"""Bounded work, measured: slow request bodies against the web, and oversized datasets
against the worker (issue 18, "cheap ways to starve the service").

    .venv/bin/python benchmarks/slow_bodies.py [--seconds 40] [--bodies 12]
                                               [--skip-bodies] [--skip-datasets]
                                               [--before SECONDS] [--startup]

1. (Re)creates the database ``modelgate_bench_slow``, migrates it and seeds a user with an
   API token and a project.
2. Slow bodies: starts the production gunicorn (portal/gunicorn_conf.py: 2 workers x 4
   threads, DEBUG off) and opens ``--bodies`` dataset uploads that send 10 bytes every
   2 s (an attacker that reconnects whenever one is cut), while a prober asks /healthz
   every 0.5 s with a 3 s timeout (kubelet's liveness settings). Three set-ups: gunicorn
   alone as it was (no body deadline), gunicorn alone with its body deadline
   (``MODELGATE_BODY_TIMEOUT_SECONDS``, 30 s here), and behind the shipped nginx
   (deploy/kubernetes/nginx.conf) when ``nginx`` is installed. Prints, per set-up, how
   many probes were answered, the longest time /healthz did not answer, and its latency.
3. Datasets: starts a Celery worker as deployed (prefork, one child) and uploads through
   the API a 10 MB CSV with a million columns, a Parquet file of 50 million rows (about
   200 KB) and a Parquet file whose one string column expands to 2 GB; for each, the time
   from the upload's answer to the dataset being ``failed`` with its reason, the worker's
   peak memory (the largest resident set of its pool child, from /proc, and of the
   reader child the profiler forks, from its own log line). ``--before`` also reads the wide
   CSV as the profiler did before the limits (pandas on the whole file, then the profile),
   in a child stopped after SECONDS, and prints how far it got and its memory.
4. ``--startup``: with both cores kept busy by two other processes, how long a fresh
   process takes to import what a pool child used to import when it started (pandas,
   scikit-learn, skops, scipy), against the 4 s Celery gives a child to come up; then a
   prefork worker with two children and that 4 s limit (``MODELGATE_WORKER_START_SECONDS``):
   how long until it is ready, and whether any child was killed while starting.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from registry_api import PG_SERVER, free_port, stop_server  # noqa: E402

DB_NAME = "modelgate_bench_slow"


def recreate(drop_only: bool = False) -> None:
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def environment(data_dir: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "MODELGATE_"))}
    env.update({"DATABASE_URL": f"{PG_SERVER}/{DB_NAME}", "MODELGATE_DATA_DIR": data_dir,
                "DJANGO_SETTINGS_MODULE": "portal.settings", "DJANGO_DEBUG": "false",
                "DJANGO_SECRET_KEY": "slow-bodies-benchmark-" + "k" * 40,
                "MODELGATE_REQUIRE_SECRET_KEY": "true", "MODELGATE_LOG_LEVEL": "WARNING",
                "MODELGATE_REDIS_PREFIX": f"modelgate-slow-{os.getpid()}:",
                "MODELGATE_CELERY_QUEUE": f"modelgate-slow-{os.getpid()}",
                "MODELGATE_EXPLAIN_VERSIONS": "false",
                "MODELGATE_RATE_UPLOADS": "100000/hour"})
    return env


def seed() -> dict:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from portal.accounts.services import create_token
    from portal.registry import services

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("slow-owner", password="slow-pass-1")
    project = services.create_project(user, name="Slow", slug="slow")
    _, token = create_token(user, "bench", scopes=["read", "write"])
    return {"token": token, "project": project.pk}


# -- slow bodies ------------------------------------------------------------------------------

def start_gunicorn(env: dict, log_path: Path, port: int) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "-c",
                             "python:portal.gunicorn_conf", "portal.wsgi", "-b",
                             f"127.0.0.1:{port}", "--access-logfile", "/dev/null"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", log_path, proc)
    except RuntimeError:
        proc.kill()
        raise
    return proc


def wait_healthy(base: str, log_path: Path, proc: subprocess.Popen | None = None) -> None:
    """Until /healthz answers; a busy machine can take a minute or more to start gunicorn's
    processes, so the wait is long, and it ends at once if the server exits."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{base}: the server exited ({proc.returncode}): "
                               + log_path.read_text()[-2000:])
        try:
            if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.3)
    raise RuntimeError(f"{base} did not answer in 180 s: " + log_path.read_text()[-2000:])


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None)


def start_nginx(folder: Path, port: int, upstream: int) -> subprocess.Popen:
    """The shipped configuration, on other ports and with its files in ``folder``."""
    text = (ROOT / "deploy" / "kubernetes" / "nginx.conf").read_text()
    text = text.replace("listen 8080 ", f"listen 127.0.0.1:{port} ")
    text = text.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream};")
    text = text.replace("/tmp/", f"{folder}/")
    folder.chmod(0o755)  # nginx's workers (nobody, when started as root) spool bodies here
    conf = folder / "nginx.conf"
    conf.write_text(text)
    proc = subprocess.Popen([nginx_binary(), "-c", str(conf), "-p", f"{folder}/", "-e",
                             "stderr", "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=open(folder / "nginx.log", "ab"))  # noqa: SIM115
    wait_healthy(f"http://127.0.0.1:{port}", folder / "nginx.log")
    return proc


class SlowBody(threading.Thread):
    """An upload whose body trickles in, 10 bytes every 2 s; reconnects when it is cut."""

    def __init__(self, port: int, token: str, stop: threading.Event):
        super().__init__(daemon=True)
        self.port, self.token, self.stop = port, token, stop
        self.connections = 0
        self.answers: list[str] = []

    def run(self):
        while not self.stop.is_set():
            self.connections += 1
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    sock.sendall(
                        b"POST /api/v1/datasets/ HTTP/1.1\r\n"
                        + f"Host: 127.0.0.1:{self.port}\r\n".encode()
                        + f"Authorization: Token {self.token}\r\n".encode()
                        + b"Content-Type: multipart/form-data; boundary=slowslowslow\r\n"
                        + b"Content-Length: 1000000\r\n\r\n")
                    sock.settimeout(0.01)
                    while not self.stop.is_set():
                        sock.sendall(b"x" * 10)
                        try:
                            answer = sock.recv(200)
                        except TimeoutError:
                            answer = None
                        if answer is not None:  # answered (or closed): the attacker retries
                            self.answers.append(answer.split(b"\r\n", 1)[0].decode(
                                errors="replace") or "closed")
                            break
                        self.stop.wait(2)
            except OSError as e:
                self.answers.append(type(e).__name__)
                self.stop.wait(0.5)


def probe_health(base: str, seconds: float) -> list[tuple[float, float | None]]:
    """/healthz every 0.5 s on a new connection with a 3 s timeout: (time, latency or None)."""
    results = []
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        at = time.monotonic()
        try:
            ok = requests.get(f"{base}/healthz", timeout=3,
                              headers={"Connection": "close"}).status_code == 200
            results.append((at - start, time.monotonic() - at if ok else None))
        except requests.RequestException:
            results.append((at - start, None))
        time.sleep(max(0.0, 0.5 - (time.monotonic() - at)))
    return results


def attack(port: int, token: str, bodies: int, seconds: float) -> dict:
    stop = threading.Event()
    senders = [SlowBody(port, token, stop) for _ in range(bodies)]
    for sender in senders:
        sender.start()
    time.sleep(1.0)  # every body open before the probing starts
    probes = probe_health(f"http://127.0.0.1:{port}", seconds)
    stop.set()
    for sender in senders:
        sender.join(timeout=5)
    answered = [latency for _, latency in probes if latency is not None]
    longest = current = 0.0
    last = None
    for at, latency in probes:
        if latency is None:
            current += (at - last) if last is not None else 0.5
            longest = max(longest, current)
        else:
            current = 0.0
        last = at
    answers: dict[str, int] = {}
    for sender in senders:
        for answer in sender.answers:
            answers[answer] = answers.get(answer, 0) + 1
    return {"probes": len(probes), "answered": len(answered), "longest_outage": longest,
            "p50": statistics.median(answered) if answered else None,
            "max": max(answered) if answered else None,
            "connections": sum(s.connections for s in senders), "answers": answers}


def slow_bodies(env: dict, world: dict, data_dir: Path, bodies: int, seconds: float) -> None:
    setups = [("gunicorn alone, no body deadline (as before)", {"MODELGATE_BODY_TIMEOUT_SECONDS": "0"}, False),
              ("gunicorn alone, 30 s body deadline", {"MODELGATE_BODY_TIMEOUT_SECONDS": "30"}, False)]
    if nginx_binary():
        setups.append(("nginx (deploy/kubernetes/nginx.conf) in front of gunicorn", {}, True))
    else:
        print("nginx is not installed (apt-get install nginx-light): the proxy is not measured")
    print(f"\n{bodies} slow uploads (10 bytes every 2 s) for {seconds:g} s; /healthz every "
          "0.5 s, 3 s timeout")
    for name, extra, proxied in setups:
        upstream = free_port()
        server = start_gunicorn(dict(env, **extra), data_dir / "gunicorn.log", upstream)
        proxy = None
        port = upstream
        try:
            if proxied:
                folder = Path(tempfile.mkdtemp(prefix="nginx-", dir=data_dir))
                port = free_port()
                proxy = start_nginx(folder, port, upstream)
            result = attack(port, world["token"], bodies, seconds)
        finally:
            if proxy is not None:
                proxy.terminate()
                proxy.wait(timeout=10)
            stop_server(server)
        latency = (f"latency p50 {1000 * result['p50']:.0f} ms, max {1000 * result['max']:.0f} ms"
                   if result["answered"] else "no answer at all")
        print(f"- {name}: /healthz answered {result['answered']}/{result['probes']} probes, "
              f"longest without an answer {result['longest_outage']:.1f} s, {latency}; "
              f"the attacker opened {result['connections']} connections "
              f"(answers: {result['answers'] or 'none'})")


# -- datasets ---------------------------------------------------------------------------------

def wide_csv(columns: int = 1_000_000) -> bytes:
    header = ",".join(f"c{i}" for i in range(columns))
    return (header + "\n" + ",".join("1" for _ in range(columns)) + "\n").encode()


def parquet_rows_bomb(rows: int = 50_000_000) -> bytes:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = io.BytesIO()
    pq.write_table(pa.table({"a": np.zeros(rows, dtype=np.int8)}), out, compression="zstd")
    return out.getvalue()


def parquet_string_bomb(rows: int = 1_000_000, length: int = 2_000) -> bytes:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    # one value over every row, written as any Parquet writer writes a repeated value
    # (dictionary pages), without expanding it here
    column = pa.DictionaryArray.from_arrays(np.zeros(rows, dtype=np.int32),
                                            pa.array(["x" * length]))
    out = io.BytesIO()
    pq.write_table(pa.table({"s": column}), out, compression="zstd", store_schema=False)
    return out.getvalue()


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def datasets(env: dict, world: dict, data_dir: Path) -> None:
    log_path = data_dir / "worker.log"
    worker_env = dict(env, MODELGATE_LOG_LEVEL="INFO")
    worker = subprocess.Popen([str(Path(sys.executable).parent / "celery"), "-A", "portal",
                               "worker", "-P", "prefork", "--concurrency", "1",
                               "--loglevel", "INFO", "--without-gossip", "--without-mingle"],
                              cwd=ROOT, env=worker_env, stdout=open(log_path, "ab"),  # noqa: SIM115
                              stderr=subprocess.STDOUT)
    port = free_port()
    server = start_gunicorn(env, data_dir / "gunicorn.log", port)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Token {world['token']}"}
    try:
        deadline = time.monotonic() + 120
        while "ready." not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)
        children = [p for p in process_tree(worker.pid) if p != worker.pid]
        print(f"\nDatasets, through the API, profiled by a prefork worker (pool child "
              f"{children}, resident {status_kib(children[0], 'VmRSS') / 1024:.0f} MiB idle)")
        cases = [("wide.csv", "a CSV with 1,000,000 columns", wide_csv),
                 ("rows.parquet", "a Parquet file of 50,000,000 rows", parquet_rows_bomb),
                 ("strings.parquet", "a Parquet string column expanding to 2 GB",
                  parquet_string_bomb)]
        for filename, what, build in cases:
            body = build()
            before = log_path.read_text().count("bounded child")
            tree_peak = [0]
            stop = threading.Event()

            def sample(stop=stop, tree_peak=tree_peak):
                while not stop.is_set():
                    total = sum(status_kib(p, "VmRSS") for p in process_tree(worker.pid))
                    tree_peak[0] = max(tree_peak[0], total)
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            answer = requests.post(f"{base}/api/v1/datasets/", headers=headers, timeout=60,
                                   data={"project": world["project"], "name": filename},
                                   files={"file": (filename, body)})
            answered = time.monotonic()
            dataset = answer.json()
            status = dataset.get("profile_status")
            while status == "pending" and time.monotonic() - answered < 600:
                time.sleep(0.05)
                dataset = requests.get(f"{base}/api/v1/datasets/{dataset['id']}/",
                                       headers=headers, timeout=10).json()
                status = dataset["profile_status"]
            elapsed = time.monotonic() - answered
            stop.set()
            sampler.join()
            lines = [line for line in log_path.read_text().splitlines()
                     if "bounded child" in line][before:]
            child_peak = re.search(r"peak (\d+) MiB", lines[-1])[1] if lines else "?"
            hwm = max(status_kib(p, "VmHWM") for p in children) / 1024
            print(f"- {what} ({len(body) / 1e6:.1f} MB, upload answered {answer.status_code}): "
                  f"{status} {elapsed:.2f} s after the upload's answer: "
                  f"\"{dataset.get('profile_reason')}\"; worker's pool child peak "
                  f"{hwm:.0f} MiB resident, the reader child it forked {child_peak} MiB "
                  f"(both count the pages they share); sum of the worker's processes' resident "
                  f"sets at most {tree_peak[0] / 1024:.0f} MiB")
    finally:
        stop_server(server)
        worker.terminate()
        worker.wait(timeout=30)


def before(seconds: float) -> None:
    """The wide CSV read the old way (no limits), in a child stopped after ``seconds``."""
    import pandas as pd

    from ops.bounded import BoundExceeded, run_bounded
    from ops.profile import profile_frame

    path = Path(tempfile.mkdtemp()) / "wide.csv"
    path.write_bytes(wide_csv())

    def old_profile():
        frame = pd.read_csv(path)
        return len(profile_frame(frame)["features"])

    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            for pid in process_tree(os.getpid())[1:]:
                peak[0] = max(peak[0], status_kib(pid, "VmRSS"))
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    started = time.monotonic()
    try:
        outcome = f"profiled {run_bounded(old_profile, seconds=seconds)} columns"
    except BoundExceeded as e:
        outcome = f"stopped: {e.detail}"
    stop.set()
    print(f"\nBefore the limits, the wide CSV read and profiled as it was: {outcome} after "
          f"{time.monotonic() - started:.0f} s, reader at {peak[0] / 1024:.0f} MiB resident")
    path.unlink()


def startup(env: dict, data_dir: Path) -> None:
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        times = []
        for _ in range(3):
            started = time.monotonic()
            subprocess.run([sys.executable, "-c",
                            "import pandas, sklearn.ensemble, skops.io, scipy.stats"],
                           check=True, cwd=ROOT)
            times.append(time.monotonic() - started)
        print(f"\nWorker start-up with both cores busy: importing pandas, scikit-learn, skops "
              f"and scipy in a new process took {', '.join(f'{t:.1f}' for t in times)} s "
              "(a pool child did that while starting; Celery kills a child not up in 4 s)")
        log_path = data_dir / "startup.log"
        started = time.monotonic()
        worker = subprocess.Popen([str(Path(sys.executable).parent / "celery"), "-A",
                                   "portal", "worker", "-P", "prefork", "--concurrency", "2",
                                   "--loglevel", "INFO", "--without-gossip",
                                   "--without-mingle"], cwd=ROOT,
                                  env=dict(env, MODELGATE_WORKER_START_SECONDS="4",
                                           MODELGATE_LOG_LEVEL="INFO"),
                                  stdout=open(log_path, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
        while "ready." not in log_path.read_text() and time.monotonic() - started < 180:
            time.sleep(0.1)
        ready = time.monotonic() - started
        time.sleep(10)
        children = [p for p in process_tree(worker.pid) if p != worker.pid]
        worker.terminate()
        worker.wait(timeout=30)
        log = log_path.read_text()
        print(f"- a prefork worker (2 children, 4 s start-up limit) with the imports done "
              f"before forking: ready after {ready:.1f} s, {len(children)} children after 10 s"
              f" more, {log.count('Timed out waiting for UP message')} killed while starting")
    finally:
        for process in busy:
            process.kill()
            process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--bodies", type=int, default=12)
    parser.add_argument("--skip-bodies", action="store_true")
    parser.add_argument("--skip-datasets", action="store_true")
    parser.add_argument("--before", type=float, default=0, metavar="SECONDS")
    parser.add_argument("--startup", action="store_true")
    args = parser.parse_args()
    recreate()
    data_dir = Path(tempfile.mkdtemp(prefix="modelgate-bench-slow-"))
    env = environment(str(data_dir))
    os.environ.update(env)
    try:
        world = seed()
        if not args.skip_bodies:
            slow_bodies(env, world, data_dir, args.bodies, args.seconds)
        if not args.skip_datasets:
            datasets(env, world, data_dir)
        if args.before:
            before(args.before)
        if args.startup:
            startup(env, data_dir)
    finally:
        from django.db import connections

        connections.close_all()
        recreate(drop_only=True)
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
