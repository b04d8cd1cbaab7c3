"""Load an untrusted pickle once, in a process that can do little harm, and turn it into skops.

A pickle runs code when it is loaded. Where an operator allows pickles at all
(``MODELGATE_ALLOW_UNSAFE_ARTIFACTS``), the portal never loads one in a process of its own:
``convert_pickle`` hands the bytes to ``python -m ops.sandbox`` on its standard input and
reads a skops file back from its standard output. Everything after that (validation,
explanations, diffs, model servers) loads the skops file with the trusted-type check, so a
pickle is loaded once, here, and never again.

The child process, before it reads a byte of the pickle:

- has an environment with nothing of the portal's in it (no database URL, secret key,
  prediction-id secret, broker or cloud credentials): the parent passes an allow-list;
- takes CPU-time, address-space, open-file and file-size limits (``RLIMIT_FSIZE`` 0: it
  cannot write to any file, only to the pipe it answers on);
- leaves the network: a new, empty network namespace (as root; otherwise inside a new user
  namespace where the kernel allows it), so it cannot reach the database, Redis, the cloud
  APIs or the metadata service over TCP; where neither is allowed it says so and the
  parent records it;
- drops to an unprivileged user (``nobody``) when started as root, and then may not fork
  (``RLIMIT_NPROC`` 0);
- is killed by the parent at a wall-clock deadline.

What it cannot stop: a pickle reading files that the unprivileged user may read, or talking
to Unix sockets on the filesystem. The portal keeps its data directory private (0700, set
at start-up) and the reason a failed load reports short (300 characters).
"""

from __future__ import annotations

import ctypes
import importlib
import io
import json
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ops.exceptions import ArtifactError

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000

# Variables the child may keep: how to find Python and its libraries, nothing else.
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONHASHSEED")
SINGLE_THREAD_ENV = {name: "1" for name in (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS")}
REPO_ROOT = Path(__file__).resolve().parents[1]
MAX_REASON_CHARS = 300
PRELOAD = ("encodings.idna", "bz2", "lzma", "gzip", "zlib", "pickle", "joblib", "numpy",
           "scipy.sparse", "pandas", "skops.io", "sklearn", "sklearn.base",
           "sklearn.pipeline", "sklearn.compose", "sklearn.preprocessing", "sklearn.impute",
           "sklearn.linear_model", "sklearn.tree", "sklearn.ensemble", "sklearn.neighbors",
           "sklearn.svm", "sklearn.naive_bayes", "sklearn.dummy", "sklearn.calibration",
           "sklearn.feature_extraction", "sklearn.decomposition", "sklearn.cluster")


@dataclass(frozen=True)
class SandboxLimits:
    """What one conversion may use. Defaults fit a scikit-learn model of a few hundred MB."""

    memory_bytes: int = 4 * 1024**3
    cpu_seconds: int = 120
    wall_seconds: float = 180.0
    user: str = "nobody"
    max_output_bytes: int = 2 * 1024**3


@dataclass(frozen=True)
class Conversion:
    """A converted artifact and how the process that made it was confined."""

    skops: bytes
    isolation: dict


def child_environment() -> dict[str, str]:
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env.update(SINGLE_THREAD_ENV)
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["HOME"] = "/nonexistent"
    return env


def convert_pickle(data: bytes, limits: SandboxLimits = SandboxLimits(),
                   allowed_globals: frozenset[str] | set[str] | None = None) -> Conversion:
    """The skops bytes of the model in pickle/joblib ``data``, loaded in a confined child.

    ``allowed_globals``: the child unpickles with an unpickler that looks up only these
    ``module.name``s and refuses any other (a plain pickle then, not joblib's containers;
    ``ops.pickles`` reads them beforehand). Raises ``ArtifactError`` with the child's
    reason: the pickle failed to load or raised, the model cannot be written as skops, or
    a limit was hit (``sandbox_limit``).
    """
    command = [sys.executable, "-s", "-m", "ops.sandbox", "--user", limits.user,
               "--memory", str(limits.memory_bytes), "--cpu", str(limits.cpu_seconds)]
    if allowed_globals is not None:
        command += ["--allow-globals", ",".join(sorted(allowed_globals))]
    try:
        done = subprocess.run(command, input=data, capture_output=True,
                              timeout=limits.wall_seconds, env=child_environment(),
                              cwd=REPO_ROOT, start_new_session=True)
    except subprocess.TimeoutExpired as e:
        raise ArtifactError(f"loading the pickle took longer than {limits.wall_seconds:.0f} s "
                            "(the sandbox's time limit)", code="sandbox_limit") from e
    report = _last_json_line(done.stderr)
    if done.returncode != 0 or not done.stdout:
        if report.get("error"):
            # The child's words are the pickle's to choose: kept short, so whatever it read
            # cannot be carried out in the reason its uploader reads.
            raise ArtifactError(str(report["error"])[:MAX_REASON_CHARS],
                                code=str(report.get("code", "corrupt_artifact"))[:40])
        if done.returncode < 0:
            raise ArtifactError(
                f"loading the pickle was stopped by signal {-done.returncode} (a sandbox limit: "
                f"{limits.memory_bytes // 1024**2} MiB of memory, {limits.cpu_seconds} s of "
                "CPU)", code="sandbox_limit")
        tail = done.stderr.decode(errors="replace")[-MAX_REASON_CHARS:]
        raise ArtifactError(f"loading the pickle failed (exit {done.returncode}): {tail}",
                            code="corrupt_artifact")
    if len(done.stdout) > limits.max_output_bytes:
        raise ArtifactError("the converted model is larger than the sandbox allows",
                            code="sandbox_limit")
    return Conversion(skops=done.stdout, isolation=report.get("isolation", {}))


def _last_json_line(stderr: bytes) -> dict:
    for line in reversed(stderr.decode(errors="replace").splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return {}


# The child ---------------------------------------------------------------------------------

def _unshare(flags: int) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.unshare(flags) == 0


def confine(*, user: str, memory_bytes: int, cpu_seconds: int) -> dict:
    """Limit this process before it reads untrusted input; return what took effect."""
    isolation = {}
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    root = os.geteuid() == 0
    isolation["network"] = "namespace" if _unshare(CLONE_NEWNET) else (
        "user+network namespace" if not root and _unshare(CLONE_NEWUSER | CLONE_NEWNET)
        else "shared")
    if root:
        import pwd

        entry = pwd.getpwnam(user)
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
        isolation["user"] = user
    else:
        isolation["user"] = str(os.geteuid())
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    isolation["limits"] = {"memory_bytes": memory_bytes, "cpu_seconds": cpu_seconds,
                           "file_size": 0}
    return isolation


def _restricted_load(data: bytes, allowed: set[str]):
    import pickle

    class Restricted(pickle.Unpickler):
        def find_class(self, module, name):
            if f"{module}.{name}" not in allowed:
                raise pickle.UnpicklingError(f"{module}.{name} is not a trusted type")
            return super().find_class(module, name)

    return Restricted(io.BytesIO(data)).load()


def _convert(data: bytes, allowed_globals: set[str] | None = None) -> bytes:
    import joblib
    import skops.io as sio

    try:
        model = (joblib.load(io.BytesIO(data)) if allowed_globals is None
                 else _restricted_load(data, allowed_globals))
    except MemoryError as e:
        raise ArtifactError("loading the pickle ran out of the sandbox's memory",
                            code="sandbox_limit") from e
    except Exception as e:  # noqa: BLE001 - whatever the pickle raised is the reason
        raise ArtifactError(f"the pickle failed to load: {type(e).__name__}: {e}",
                            code="corrupt_artifact") from e
    try:
        return sio.dumps(model)
    except Exception as e:  # noqa: BLE001
        raise ArtifactError(f"the model cannot be written as skops: {type(e).__name__}: {e}",
                            code="unconvertible_artifact") from e


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--user", default="nobody")
    parser.add_argument("--memory", type=int, default=SandboxLimits.memory_bytes)
    parser.add_argument("--cpu", type=int, default=SandboxLimits.cpu_seconds)
    parser.add_argument("--allow-globals", default=None,
                        help="comma-separated module.name list: unpickle only these")
    args = parser.parse_args(argv)
    allowed = None if args.allow_globals is None else set(filter(None, args.allow_globals.split(",")))
    # Import what unpickling a common model needs before the limits (NPROC 0 refuses the
    # threads some libraries start on import), before the switch to a user who may not read
    # the Python installation, and before untrusted bytes are read.
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            continue

    isolation = confine(user=args.user, memory_bytes=args.memory, cpu_seconds=args.cpu)
    data = sys.stdin.buffer.read()
    try:
        converted = _convert(data, allowed)
    except ArtifactError as e:
        sys.stderr.write(json.dumps({"error": e.detail, "code": e.code,
                                     "isolation": isolation}) + "\n")
        return 2
    sys.stdout.buffer.write(converted)
    sys.stdout.flush()
    sys.stderr.write(json.dumps({"isolation": isolation}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
