"""``manage.py rundemo``'s processes (portal/demo_processes.py): each logs to a file, errors
also reach the terminal, a helper that stops is started again and never takes the demo
down, an essential process that stops does."""

import sys
import time

from portal.demo_processes import RESTARTS, Child, Supervisor, shown, tail


def test_errors_and_whole_tracebacks_are_shown_other_lines_only_logged():
    lines = ["2026-12-05 13:25:02,360 INFO celery.worker: Connected\n",
             "Traceback (most recent call last):\n",
             '  File "demo_traffic.py", line 86, in send_rows\n',
             "ValueError: output array is read-only\n",
             "next line\n",
             "2026-12-05 13:25:03 ERROR portal.x: could not email\n",
             'ts=2026 caller=main.go level=error msg="opening storage failed"\n',
             "[2026-12-05 13:25:03 +0000] [42] [CRITICAL] WORKER TIMEOUT (pid:43)\n"]
    in_traceback, seen = False, []
    for line in lines:
        show, in_traceback = shown(line, in_traceback)
        seen.append(show)
    assert seen == [False, True, True, True, False, True, True, True]


def children(tmp_path, **commands) -> tuple[dict, list]:
    terminal = []
    return {name: Child(name, [sys.executable, "-c", code], env={}, log=tmp_path / f"{name}.log",
                        show=terminal.append)
            for name, code in commands.items()}, terminal


def settle(supervisor: Supervisor, rounds: int = 40):
    """Check as rundemo does (here every 0.05 s) until an essential process stops."""
    for _ in range(rounds):
        stopped = supervisor.check()
        if stopped is not None:
            return stopped
        time.sleep(0.05)
    return None


def test_a_helper_that_stops_is_started_again_then_left_out_and_the_demo_runs_on(tmp_path):
    procs, terminal = children(
        tmp_path, web="import time; time.sleep(30)",
        traffic="print('demo traffic: 10 requests/s'); print('ERROR it broke'); "
                "raise SystemExit(1)")
    said = []
    supervisor = Supervisor(procs, {"traffic": "synthetic traffic"}, say=said.append)
    supervisor.start()
    try:
        assert settle(supervisor, rounds=60) is None  # the web server runs on
        assert procs["traffic"].abandoned and not procs["web"].stopped
    finally:
        supervisor.stop(seconds=5)
    assert said[:RESTARTS] == [
        f"traffic stopped (exit status 1; its log: {tmp_path / 'traffic.log'}); starting it "
        f"again ({n} of {RESTARTS})." for n in range(1, RESTARTS + 1)]
    assert said[RESTARTS:] == [
        f"traffic stopped (exit status 1; its log: {tmp_path / 'traffic.log'}) again; the "
        "portal runs on without synthetic traffic."]
    log = (tmp_path / "traffic.log").read_text()
    assert log.count("--- traffic started") == RESTARTS + 1
    assert log.count("demo traffic: 10 requests/s") == RESTARTS + 1
    assert terminal == ["[traffic] ERROR it broke"] * (RESTARTS + 1)


def test_an_essential_process_that_stops_stops_the_demo(tmp_path):
    procs, _ = children(tmp_path, web="raise SystemExit(3)",
                        traffic="import time; time.sleep(30)")
    supervisor = Supervisor(procs, {"traffic": "synthetic traffic"}, say=print)
    supervisor.start()
    try:
        stopped = settle(supervisor)
    finally:
        supervisor.stop(seconds=5)
    assert stopped is procs["web"] and stopped.proc.returncode == 3
    assert procs["traffic"].stopped  # stopped with the rest


def test_the_end_of_a_log_is_of_the_last_run(tmp_path):
    log = tmp_path / "web.log"
    log.write_text("--- web started 2026-12-05 13:47:00 ---\nold run\n"
                   "- *** --- * --- \n"  # a Celery banner's line is no start
                   "--- web started 2026-12-05 13:48:28 ---\n"
                   + "".join(f"line {i}\n" for i in range(20)))
    assert tail(log, lines=3) == ["line 17", "line 18", "line 19"]
    assert tail(log, lines=1) == ["line 19"]
    assert tail(tmp_path / "none.log") == []
