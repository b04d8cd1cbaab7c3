"""Run a function in a forked child process with a memory cap and a deadline.

For work on untrusted input whose cost cannot be known before it is done, such as parsing
an uploaded dataset: the child's private writable memory is capped (``RLIMIT_DATA``,
counted above what the process already holds when it forks, so the cap is the memory the
work may *add*), and the parent kills it at the deadline. ``RLIMIT_DATA`` rather than
``RLIMIT_AS``: a process that imported numpy and scikit-learn reserves hundreds of
megabytes of address space it never uses (thread stacks, malloc arenas), which the child
inherits and could fill without a new mapping, so an address-space cap lets the work grow
by an unknown amount more than asked; the data limit counts memory as it becomes
writable, wherever it is. When the child runs out of memory, is killed or
dies, the caller gets an ``OutOfMemory``, ``TimedOut`` or ``ChildDied`` error and
carries on; the worker process that asked is never the one that grows.

The child is forked, not spawned: the libraries the parent imported (pandas, pyarrow) are
already there, so starting it costs milliseconds. It must only compute and return a
picklable value; it never touches the parent's database connections (it leaves through
``os._exit``, which closes their sockets without a word to the server). Linux only (the
cap needs ``/proc`` and ``setrlimit``).
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import resource
import select
import signal
import time

from ops.exceptions import DetailedError, PermanentError

log = logging.getLogger(__name__)


class BoundExceeded(DetailedError, PermanentError):
    """The bounded work was stopped; ``detail`` says which bound it reached."""

    code = "bound_exceeded"


class OutOfMemory(BoundExceeded):
    code = "out_of_memory"


class TimedOut(BoundExceeded):
    code = "timed_out"


class ChildDied(BoundExceeded):
    code = "child_died"


def _status_bytes(field: str, pid: int | str = "self") -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def data_bytes() -> int:
    """The private writable memory this process holds now (VmData, what RLIMIT_DATA
    counts)."""
    return _status_bytes("VmData")


def peak_rss_bytes(pid: int | str = "self") -> int:
    """The largest resident set a process has had (VmHWM), 0 if unknown."""
    return _status_bytes("VmHWM", pid)


def _die_with_parent() -> None:
    """Ask the kernel to kill this child if the parent dies (a worker killed at its hard
    time limit must not leave its reader running)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child(write_fd: int, fn, args, kwargs, memory_bytes: int | None,
           seconds: float | None) -> None:
    payload: tuple
    try:
        _die_with_parent()
        if seconds:  # a CPU-time backstop should the parent be unable to kill it
            cpu = math.ceil(seconds) + 5
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
        if memory_bytes:
            cap = data_bytes() + int(memory_bytes)
            hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
            if hard != resource.RLIM_INFINITY:
                cap = min(cap, hard)
            resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))
        try:
            payload = ("ok", fn(*args, **kwargs))
        except MemoryError:
            payload = ("memory", None)
        except SystemError as e:
            # A C extension whose allocation failed under the cap may return without
            # setting MemoryError ("error return without exception set"); nothing else in
            # reading a file raises SystemError.
            payload = ("memory", None) if memory_bytes else ("error", e)
        except BaseException as e:  # handed to the parent, which raises it
            payload = ("error", e)
        try:
            data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        except MemoryError:
            data = pickle.dumps(("memory", None))
        except Exception as e:  # an unpicklable result or error: say what it was
            data = pickle.dumps(("error", PermanentError(f"{type(e).__name__}: {e}")))
        view = memoryview(data)
        while view:
            written = os.write(write_fd, view)
            view = view[written:]
    finally:
        os._exit(0)


def run_bounded(fn, *args, memory_bytes: int | None = None, seconds: float | None = None,
                **kwargs):
    """``fn(*args, **kwargs)`` in a forked child that may add at most ``memory_bytes`` of
    memory and must answer within ``seconds``; its result, or its exception.

    Raises ``OutOfMemory`` (a ``MemoryError`` in the child, or the child killed while
    near its cap), ``TimedOut`` (killed at the deadline) or ``ChildDied`` (anything else
    that ended it without an answer). Any exception of the caller's (a Celery soft time
    limit, say) kills the child before it propagates.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child leaves through os._exit
        os.close(read_fd)
        _child(write_fd, fn, args, kwargs, memory_bytes, seconds)
    os.close(write_fd)
    started = time.monotonic()
    status = usage = None
    try:
        data = _read_all(read_fd, started + seconds if seconds else None, seconds)
        _, status, usage = os.wait4(pid, 0)
    finally:
        os.close(read_fd)
        if status is None:  # stopped early (deadline, or an exception of the caller's)
            usage = _kill(pid)
        log.info("bounded child %s of %s: %.2f s, peak %.0f MiB resident", pid,
                 getattr(fn, "__qualname__", fn), time.monotonic() - started,
                 (usage.ru_maxrss / 1024) if usage else float("nan"))
    if not data:
        raise _no_answer(status, memory_bytes, seconds)
    kind, value = pickle.loads(data)
    if kind == "ok":
        return value
    if kind == "memory":
        raise OutOfMemory(f"needed more than {_size(memory_bytes or 0)} of memory")
    raise value


def _read_all(read_fd: int, deadline: float | None, seconds: float | None) -> bytes:
    """Everything the child writes until it closes its end; ``TimedOut`` at the deadline."""
    chunks: list[bytes] = []
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise TimedOut(f"took longer than {seconds:g} s")
        ready, _, _ = select.select([read_fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(read_fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _kill(pid: int):
    """Kill the child and reap it; its resource usage."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return os.wait4(pid, 0)[2]


def _no_answer(status: int, memory_bytes: int | None, seconds: float | None) -> BoundExceeded:
    """Why a child that ended without an answer ended."""
    if not os.WIFSIGNALED(status):
        return ChildDied("ended without an answer")
    number = os.WTERMSIG(status)
    if number in (signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS) \
            and memory_bytes:
        return OutOfMemory(f"needed more than {_size(memory_bytes)} of memory "
                           f"(stopped by signal {signal.Signals(number).name})")
    if number == signal.SIGXCPU:
        return TimedOut(f"used more than {math.ceil(seconds or 0) + 5} s of CPU")
    return ChildDied(f"stopped by signal {signal.Signals(number).name}")


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n} bytes"
