"""The local backend: model-server processes on this machine (the embedded default).

Each endpoint gets one ``python -m ops.serving`` process on its own port, started in its own
session so it outlives the worker that started it. The plan is a JSON file the server
watches; writing a new plan (atomically) is how traffic moves, and the server loads new
models before it switches, so a change of plan drops no request. State lives in files
under ``state_dir`` (``<endpoint>/plan.json``, ``server.pid``, ``server.log``), so any
worker process can apply, observe or delete.

Applies are fenced by generation (see ``Backend.apply``): the plan file is read, judged and
replaced while holding ``<endpoint>/apply.lock`` (``flock``), so of two processes applying
at once the older plan is refused whichever comes second, and a server is never started
twice. Waiting for the server to serve the plan happens after the lock is released.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from ops.backends.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    ObservedState,
    ObservedVariant,
    check_generation,
    plan_digest,
)
from ops.plan import PlanError, ServingPlan
from ops.serving.ids import INSTANCE_ENV, KEY_ENV

# What a model server inherits from the worker that starts it: where Python and its
# libraries are, the serving tunables, and the S3 credentials artifacts may need. Nothing
# else: the worker's environment holds the database URL, the secret key and the
# prediction-id secret, which a model server has no use for.
SERVER_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "HOME", "VIRTUAL_ENV", "PYTHONPATH",
              "MODELGATE_THREADS", "MODELGATE_MAX_BATCH", "MODELGATE_BATCH_TIMEOUT_MS",
              "MODELGATE_BATCH_IDLE_ROUNDS", "MODELGATE_BATCH_INLINE_US",
              "MODELGATE_MAX_QUEUE", "MODELGATE_LOG_LEVEL",
              "MODELGATE_MAX_UNPACKED_BYTES", "MODELGATE_MAX_BODY_BYTES",
              "MODELGATE_FAST_TREES", "MODELGATE_FAST_TREES_TOLERANCE",
              "MODELGATE_FAST_TREES_THREADS")
SERVER_ENV_PREFIXES = ("AWS_",)


class LocalBackend(Backend):
    kind = "local"
    # What the server is started on; the multi-model subclass serves a catalog instead.
    SERVED_FILE = "plan.json"
    SERVED_FLAG = "--plan"

    def __init__(self, state_dir: str, port: int | None = None, ports: dict | None = None,
                 host: str = "127.0.0.1", python: str | None = None,
                 ready_timeout: float = 60.0, prediction_key: str | None = None,
                 owner: str | None = None, **extra):
        """``port`` serves every endpoint of the environment (one endpoint per environment
        in practice); ``ports`` maps endpoint names to ports when there are several;
        ``prediction_key`` (given by the portal) the key servers sign prediction ids with,
        handed to the server process in its environment; ``owner`` (given by the portal)
        marks the endpoint folders this backend may act on: a folder marked by another
        owner is refused."""
        if port is None and not ports:
            raise BackendError("the local backend needs a port (or a ports map) in the "
                               "environment's settings")
        self.state_dir = Path(state_dir)
        self.port = port
        self.ports = ports or {}
        self.host = host
        self.python = python or sys.executable
        self.ready_timeout = ready_timeout
        self.prediction_key = prediction_key
        self.owner = owner

    # Paths and process helpers ---------------------------------------------------------

    def _dir(self, endpoint: str) -> Path:
        return self.state_dir / endpoint

    def _port(self, endpoint: str) -> int:
        return int(self.ports.get(endpoint, self.port))

    def url(self, endpoint: str) -> str:
        return f"http://{self.host}:{self._port(endpoint)}"

    def _pid(self, endpoint: str) -> int | None:
        """The endpoint's running server, or None. A pid is only ours if that process is
        a model server of this endpoint's plan: after a crash the number may belong to
        any other process, which must never be stopped in its place."""
        try:
            pid = int((self._dir(endpoint) / "server.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return None  # another user's process: not a server this backend started
        if _is_zombie(pid):
            return None
        return pid if _serves_plan(pid, self._dir(endpoint) / self.SERVED_FILE) else None

    def _check_owner(self, endpoint: str) -> None:
        """Refuse to act on an endpoint folder another environment owns."""
        mark = self._dir(endpoint) / "owner"
        if self.owner is None:
            return
        found = mark.read_text() if mark.exists() else None
        if found is None:
            mark.parent.mkdir(parents=True, exist_ok=True)
            mark.write_text(self.owner)
        elif found != self.owner:
            raise BackendError(f"endpoint {endpoint} belongs to another environment; "
                               "refusing to act on it")

    def _instance(self, endpoint: str) -> str:
        mark = self._dir(endpoint) / "instance"
        return mark.read_text() if mark.exists() else ""

    def _port_taken(self, endpoint: str, wait: float = 3.0) -> bool:
        """Whether another process listens on the endpoint's port (after ``wait`` seconds for
        a server that was just stopped or killed to let go of it)."""
        deadline = time.monotonic() + wait
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.settimeout(0.5)
                if probe.connect_ex((self.host, self._port(endpoint))) != 0:
                    return False
            if time.monotonic() >= deadline:
                return True
            time.sleep(0.1)

    def _start(self, endpoint: str) -> int:
        folder = self._dir(endpoint)
        if self._port_taken(endpoint):
            raise BackendError(
                f"port {self._port(endpoint)} is in use by another process; the model server "
                f"for {endpoint} cannot start there (it is not this endpoint's server)")
        log = open(folder / "server.log", "ab")
        env = {k: v for k, v in os.environ.items()
               if k in SERVER_ENV or k.startswith(SERVER_ENV_PREFIXES)}
        if self.prediction_key:
            env[KEY_ENV] = self.prediction_key
        instance = secrets.token_hex(8)
        (folder / "instance").write_text(instance)
        env[INSTANCE_ENV] = instance
        process = subprocess.Popen(
            [self.python, "-m", "ops.serving", self.SERVED_FLAG, str(folder / self.SERVED_FILE),
             "--host", self.host, "--port", str(self._port(endpoint))],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
            cwd=Path(__file__).resolve().parents[2])
        log.close()
        _wait_for_exec(process.pid)
        (folder / "server.pid").write_text(str(process.pid))
        (folder / "key.mark").write_text(self._key_mark())
        return process.pid

    def _key_mark(self) -> str:
        """A fingerprint of the prediction-id key (never the key) a server was started with,
        and of how it was started, so a server started by an older portal is restarted by the
        next apply: "mark2" servers got an allow-listed environment (before, the worker's
        whole environment); "mark3" servers read plans whose variants carry version numbers
        (an older server refused every such plan)."""
        return hashlib.sha256(b"mark3\0" + (self.prediction_key or "").encode()).hexdigest()[:16]

    def _stop(self, endpoint: str, pid: int) -> None:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self._pid(endpoint) is not None:
            time.sleep(0.1)
        if self._pid(endpoint) is not None:
            os.killpg(pid, signal.SIGKILL)

    def _get(self, endpoint: str, path: str, timeout: float = 2.0):
        try:
            with urllib.request.urlopen(self.url(endpoint) + path, timeout=timeout) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read() or b"null")
            except ValueError:
                return e.code, None
        except (OSError, ValueError):
            return None, None

    # The contract ----------------------------------------------------------------------

    def apply(self, plan: ServingPlan, *, wait: bool = True) -> ObservedState:
        folder = self._dir(plan.endpoint)
        folder.mkdir(parents=True, exist_ok=True)
        self._check_owner(plan.endpoint)
        with self._locked(plan.endpoint):
            written_at = self._write_plan(plan)
            self._serve(plan.endpoint, reload=bool(written_at))
        if not wait:
            return self.observe(plan.endpoint)
        return self._wait_for(plan, written_at)

    @contextlib.contextmanager
    def _locked(self, endpoint: str) -> Iterator[None]:
        """Hold the endpoint's lock file: one process (or thread) at a time reads, judges
        and replaces its plan file and starts or stops its server."""
        with open(self._dir(endpoint) / "apply.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
            yield

    def _write_plan(self, plan: ServingPlan) -> float:
        """Replace the plan file with ``plan`` unless it holds it already (then 0.0, else
        when it was written). A plan file of a newer generation, or of this generation with
        other content, refuses ``plan`` (``StalePlan``, ``PlanConflict``). Call it holding
        the lock."""
        target = self._dir(plan.endpoint) / "plan.json"
        text = plan.to_json()
        current = _read(target)
        if current == text:
            return 0.0
        recorded = _parsed(current)
        check_generation(plan, recorded.generation if recorded else None,
                         plan_digest(recorded) if recorded else None, "its plan file")
        partial = target.with_name(f"plan.json.{os.getpid()}.partial")
        partial.write_text(text)
        written_at = time.time()  # before the server can see it (and fail to load it)
        os.replace(partial, target)  # the server never reads half a plan
        return written_at

    def _serve(self, endpoint: str, reload: bool) -> None:
        """Start the endpoint's server if none runs (or it has another prediction-id key);
        else, when the plan file changed, tell it to reload now. Call it holding the lock."""
        pid = self._pid(endpoint)
        mark = self._dir(endpoint) / "key.mark"
        if pid is not None and (mark.read_text() if mark.exists() else "") != self._key_mark():
            self._stop(endpoint, pid)  # started with another prediction-id key (or none)
            pid = None
        if pid is None:
            self._start(endpoint)  # first apply, or the server crashed: start it
        elif reload and self._get(endpoint, "/v2/health/live", timeout=0.5)[0] == 200:
            # The server also polls the file; the signal saves a rollback that poll's delay.
            # Only a server that answers has its handler installed (SIGHUP would end it).
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)

    def _wait_for(self, plan: ServingPlan, written_at: float) -> ObservedState:
        deadline = time.monotonic() + self.ready_timeout
        observed = None
        restarted = False
        while time.monotonic() < deadline:
            observed = self.observe(plan.endpoint)
            if observed.ready and observed.generation == plan.generation:
                return observed
            if self._superseded(plan, observed):
                return observed  # this generation will never be served: nothing to wait for
            error = observed.extra.get("last_error") or {}
            if written_at and error.get("at", 0) >= written_at:
                raise BackendError(f"the model server refused plan {plan.generation}: "
                                   f"{error.get('error')}")
            if self._pid(plan.endpoint) is None and not restarted:
                # It died after apply looked (a crash racing the check): start it once more.
                with self._locked(plan.endpoint):
                    if self._pid(plan.endpoint) is None:
                        self._start(plan.endpoint)
                restarted = True
            elif self._pid(plan.endpoint) is None:
                log = self._dir(plan.endpoint) / "server.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise BackendError(f"the model server for {plan.endpoint} exited:\n{tail}")
            time.sleep(0.1)
        raise BackendUnavailable(
            f"the model server for {plan.endpoint} did not serve plan {plan.generation} within "
            f"{self.ready_timeout:.0f}s ({observed.detail if observed else 'no answer'})")

    def _superseded(self, plan: ServingPlan, observed: ObservedState) -> bool:
        """Whether ``plan`` was replaced while apply waited: the server serves a newer
        generation, or the plan file holds one (which the server may still be loading, or
        refuse), or the endpoint was deleted."""
        if not observed.exists or (observed.generation or 0) > plan.generation:
            return True
        recorded = _parsed(_read(self._dir(plan.endpoint) / "plan.json"))
        return recorded is None or recorded.generation > plan.generation

    def observe(self, endpoint: str) -> ObservedState:
        folder = self._dir(endpoint)
        if not (folder / "plan.json").exists():
            return ObservedState(endpoint=endpoint, exists=False)
        plan = ServingPlan.from_json((folder / "plan.json").read_text())
        if self._pid(endpoint) is None:
            return ObservedState(endpoint=endpoint, exists=True, ready=False, url=self.url(endpoint),
                                 detail="the model server is not running")
        status, meta = self._get(endpoint, f"/v2/models/{endpoint}")
        if status != 200 or not isinstance(meta, dict):
            _, health = self._get(endpoint, "/v2/health/ready")
            refused = _refusal(folder, plan, health if isinstance(health, dict) else {})
            return ObservedState(endpoint=endpoint, exists=True, ready=False,
                                 url=self.url(endpoint), refused=refused,
                                 detail=refused or "the model server is starting")
        served = meta.get("parameters") or {}
        if (served.get("instance") or "") != self._instance(endpoint):
            return ObservedState(endpoint=endpoint, exists=True, ready=False,
                                 url=self.url(endpoint),
                                 detail=f"another process answers on port {self._port(endpoint)}"
                                        "; it is not this endpoint's model server")
        by_name = {v["name"]: v for v in served.get("variants", []) if "name" in v}
        variants = tuple(
            ObservedVariant(name=v.name, version_id=v.version_id,
                            weight=float(by_name[v.name].get("share", 0.0)), ready=True,
                            replicas=1)
            for v in plan.variants if v.name in by_name)
        ready_status, _ = self._get(endpoint, "/v2/health/ready")
        return ObservedState(
            endpoint=endpoint, exists=True, generation=served.get("generation"),
            ready=ready_status == 200, variants=variants, url=self.url(endpoint),
            extra={"last_error": served.get("last_error")}, refused=_refusal(folder, plan, served))

    def smoke(self, endpoint: str, variant: str, rows: list[list[float]], count: int) -> int:
        body = json.dumps({"instances": rows}).encode()
        succeeded = 0
        for _ in range(count):
            request = urllib.request.Request(f"{self.url(endpoint)}/v2/models/{variant}/infer",
                                             data=body,
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    succeeded += 200 <= answer.status < 300
            except (OSError, ValueError):
                continue
        return succeeded

    def restore(self, endpoint: str) -> bool:
        """Start the endpoint's model server again when it has a plan (applied, not
        deleted) but no server runs: model servers do not outlive the machine, or the demo
        that stopped them. It serves its last plan; True when one was started."""
        if not (self._dir(endpoint) / self.SERVED_FILE).exists():
            return False
        with self._locked(endpoint):
            if self._pid(endpoint) is not None:
                return False
            self._start(endpoint)
        return True

    def stop(self, endpoint: str) -> bool:
        """Stop the endpoint's model server and keep its plan (``restore`` starts it again on
        that plan); False if none was running."""
        if not self._dir(endpoint).is_dir():
            return False
        with self._locked(endpoint):
            pid = self._pid(endpoint)
            if pid is None:
                return False
            self._stop(endpoint, pid)
        return True

    def running(self, endpoint: str) -> int | None:
        """The pid of the endpoint's model server, or None."""
        return self._pid(endpoint)

    def delete(self, endpoint: str) -> None:
        self.stop_and_forget(endpoint, "plan.json")

    def stop_and_forget(self, endpoint: str, state_file: str) -> None:
        """Stop the endpoint's server (if this backend owns it) and remove what it was
        given (``state_file``: a plan, or a multi-model catalog) with its pid and key."""
        folder = self._dir(endpoint)
        if not folder.is_dir():
            return
        if (folder / "owner").exists():
            self._check_owner(endpoint)
        with self._locked(endpoint):
            pid = self._pid(endpoint)
            if pid is not None:
                self._stop(endpoint, pid)
            for name in (state_file, "server.pid", "key.mark"):
                (folder / name).unlink(missing_ok=True)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _parsed(text: str | None) -> ServingPlan | None:
    """The plan in a plan file's ``text``; None for no file, or one that is not a plan
    (the next plan written replaces it)."""
    if text is None:
        return None
    try:
        return ServingPlan.from_json(text)
    except PlanError:
        return None


def _serves_plan(pid: int, plan: Path) -> bool:
    """Whether process ``pid`` is a model server started on ``plan`` (its command line)."""
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc (not Linux): trust the pid file as before
    return b"ops.serving" in arguments and str(plan).encode() in arguments


def _wait_for_exec(pid: int, timeout: float = 2.0) -> None:
    """Wait until a child just started shows its own command line. Popen returns once the
    child has called exec, but for a moment after that /proc/<pid>/cmdline reads empty;
    ``_serves_plan`` would take the new server for a stranger and a second one would be
    started on the same port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes():
                return
        except OSError:
            return  # no /proc, or the child already exited: nothing to wait for
        time.sleep(0.005)


def _refusal(folder: Path, plan: ServingPlan, answer: dict) -> str:
    """Why the server refused the plan file's plan, if it did: its last load failure came
    after the file was written and it does not serve that generation."""
    error = answer.get("last_error") or {}
    try:
        written = (folder / "plan.json").stat().st_mtime
    except OSError:
        return ""
    if not error or float(error.get("at") or 0) < written \
            or answer.get("generation") == plan.generation:
        return ""
    return f"the model server refused plan {plan.generation}: {error.get('error')}"


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")
    except OSError:
        return False
