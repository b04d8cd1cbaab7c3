"""The processes ``manage.py rundemo`` runs, and what it does when one stops.

Each process writes its output to a log file of its own (``$MODELGATE_DATA_DIR/logs/``), so
the terminal keeps the demo's banner in sight; errors and tracebacks are shown in the
terminal too, after the process's name. The portal's own processes (web, workers, beat) are
essential: when one stops, the demo stops and says which, why (the end of its log) and where
its log is. Helpers (Prometheus, the synthetic traffic) are started again a few times, then
the portal runs on without them, saying so: a helper never takes the demo down.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

# Lines of a process's output also shown in the terminal: errors, and tracebacks whole.
SHOWN = re.compile(r"\b(ERROR|CRITICAL)\b|\blevel=error\b")
# A helper that stops is started again this many times before the demo runs on without it.
RESTARTS = 3
STARTED = re.compile(r"--- \S+ started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d ---$")  # a log's runs


def shown(line: str, in_traceback: bool) -> tuple[bool, bool]:
    """Whether to show ``line`` in the terminal, and whether a traceback goes on after it (its
    indented lines, up to the exception's own line, are shown with it)."""
    if line.startswith("Traceback "):
        return True, True
    if in_traceback:
        return True, line[:1] in (" ", "\t")
    return bool(SHOWN.search(line)), False


def exit_status(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            pass
    return f"exit status {returncode}"


def tail(path: Path, lines: int = 15) -> list[str]:
    """The last lines the process wrote to its log since it last started."""
    run: deque[str] = deque(maxlen=lines)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if STARTED.match(line):
                    run.clear()
                else:
                    run.append(line.rstrip("\n"))
    except OSError:
        return []
    return list(run)


def where(path: Path) -> str:
    """``path`` as the person typed the command would: relative to here when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class Child:
    """One process and its log file; ``show`` writes a line to the terminal."""

    def __init__(self, name: str, command: list[str], *, env: dict, log: Path,
                 show: Callable[[str], None]):
        self.name, self.command, self.env, self.log, self.show = name, command, env, log, show
        self.proc: subprocess.Popen | None = None
        self.relay: threading.Thread | None = None
        self.restarts = 0
        self.abandoned = False
        self.shown = 0  # lines of its current run shown in the terminal

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - the relay closes it
        self.shown = 0
        out.write(f"--- {self.name} started {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n")
        self.proc = subprocess.Popen(self.command, env=self.env, start_new_session=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, errors="replace", bufsize=1)
        self.relay = threading.Thread(target=self._relay, args=(self.proc, out), daemon=True,
                                      name=f"relay-{self.name}")
        self.relay.start()

    def _relay(self, proc: subprocess.Popen, out) -> None:
        in_traceback = False
        with out:
            for line in proc.stdout:
                out.write(line)
                show, in_traceback = shown(line, in_traceback)
                if show:
                    self.shown += 1
                    self.show(f"[{self.name}] {line.rstrip()}")

    @property
    def stopped(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # each stops its own children (warm shutdown)

    def wait(self, deadline: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.relay.join(timeout=1)  # the last lines into the log


class Supervisor:
    """The demo's processes: ``helpers`` maps the name of each optional one to what the
    portal goes without when it stops for good (e.g. ``"monitoring"``)."""

    def __init__(self, children: dict[str, Child], helpers: dict[str, str],
                 say: Callable[[str], None]):
        self.children, self.helpers, self.say = children, helpers, say

    def start(self) -> None:
        for child in self.children.values():
            child.start()

    def check(self) -> Child | None:
        """Start again the helpers that stopped (a few times each); the first essential
        process that stopped, if one did (the demo must stop)."""
        for child in self.children.values():
            if child.abandoned or not child.stopped:
                continue
            if child.name not in self.helpers:
                return child
            self._helper_stopped(child)
        return None

    def _helper_stopped(self, child: Child) -> None:
        status = f"{child.name} stopped ({exit_status(child.proc.returncode)}; its log: " \
                 f"{where(child.log)})"
        if child.restarts < RESTARTS:
            child.restarts += 1
            self.say(f"{status}; starting it again ({child.restarts} of {RESTARTS}).")
            child.start()
        else:
            child.abandoned = True
            self.say(f"{status} again; the portal runs on without "
                     f"{self.helpers[child.name]}.")

    def stop(self, seconds: float = 10) -> None:
        for child in self.children.values():
            child.terminate()
        deadline = time.monotonic() + seconds
        for child in self.children.values():
            child.wait(deadline)
