"""Run every benchmark once, briefly, and say whether each ran to its end.

    .venv/bin/python benchmarks/all.py [--only NAME ...] [--full]

Each script under benchmarks/ is started as its own process with short settings (``--full``:
their defaults), one after another, its output kept under ``benchmark-output/<name>.log``.
A benchmark *ran to its end* when it exited with 0 (every target met) or 1 (it measured and
printed a FAIL), with no Python traceback in its output; anything else (a crash, a 429 from
the portal's own rate limits, a timeout) is *stopped*, and this script exits with 2. Whether
targets are met is the benchmarks' own business: read their tables, on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name: (the arguments of a short run, the longest it may take in seconds)
BENCHMARKS = {
    "drift": (["--rows", "100000", "--repeat", "1"], 1200),
    "explain": (["--repeat", "1", "--page-requests", "10"], 900),
    "feedback": ([], 600),
    "registry_api": (["--requests", "40"], 1800),
    "portal_load": (["--seconds", "10", "--costs"], 900),
    "pages": (["--runs", "1"], 900),
    "serving": (["--duration", "3", "--warmup", "1", "--concurrency", "32"], 2400),
    "multimodel": ([], 900),
    "rollback": (["--runs", "1"], 900),
    "release_faults": (["--trials", "1", "--good-trials", "1"], 1800),
    "slow_bodies": (["--seconds", "10", "--bodies", "4"], 900),
}


def run(name: str, args: list[str], limit: float, out: Path) -> tuple[str, int | None, float]:
    log = out / f"{name}.log"
    started = time.monotonic()
    with open(log, "wb") as handle:
        process = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"),
                                    *args], cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                   start_new_session=True)
        try:
            code = process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
            return f"stopped: still running after {limit:.0f} s", None, limit
    seconds = time.monotonic() - started
    text = log.read_text(errors="replace")
    if "Traceback (most recent call last)" in text:
        last = [line for line in text.splitlines() if line.strip()][-1][:120]
        return f"stopped: {last}", code, seconds
    if code in (0, 1):
        return ("ran to its end, targets met" if code == 0
                else "ran to its end, a target missed (see its log)"), code, seconds
    return f"stopped: exit status {code}", code, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), default=None)
    parser.add_argument("--full", action="store_true", help="each benchmark's own defaults")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmark-output")
    args = parser.parse_args()
    missing = [name for name in args.only or BENCHMARKS
               if not (ROOT / "benchmarks" / f"{name}.py").exists()]
    if missing:
        print(f"!! named here but not in benchmarks/: {', '.join(missing)}")
        return 2
    unnamed = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py")
                     if p.stem not in BENCHMARKS and p.stem != "all"
                     and not p.stem.startswith("_") and "__main__" in p.read_text())
    if unnamed:
        print(f"!! benchmarks this script does not run: {', '.join(unnamed)}")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    stopped = 0
    for name in args.only or BENCHMARKS:
        short, limit = BENCHMARKS[name]
        verdict, code, seconds = run(name, [] if args.full else short, limit, args.out)
        stopped += verdict.startswith("stopped")
        print(f"{name:<16} {seconds:>7.0f} s  exit {code!s:>4}  {verdict}", flush=True)
    print(f"\n{len(args.only or BENCHMARKS) - stopped} ran to their end, {stopped} stopped; "
          f"logs in {args.out}")
    return 2 if stopped else 0


if __name__ == "__main__":
    sys.exit(main())
