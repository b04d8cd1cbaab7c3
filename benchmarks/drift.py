"""Drift statistics: Modelgate's ``ops.drift`` against Evidently's data drift report.

    .venv/bin/python benchmarks/drift.py [--rows 100000 1000000] [--skip-evidently-at 1000000]

Data: 20 numeric features, standard normal; in the current window features 0-4 are
shifted by half a standard deviation, the other 15 are drawn from the reference
distribution. Each measurement runs in a fresh process, so the peak memory printed (the
process's maximum resident set size, minus the same process's size before the data exists)
belongs to that measurement alone. Timings are the median of ``--repeat`` runs.

Measured:
- ``ops.drift.compare_samples``: every statistic (PSI, KS, Jensen–Shannon, normalized
  Wasserstein, chi-square) for 20 features from raw rows, one binning pass per side;
- ``ops.drift.compare_histograms``: the same from Prometheus-style counts (10 baseline bins
  per feature, as the model server exports them) — what the portal's worker runs;
- Evidently's ``DataDriftPreset`` report on the same frames (Evidently 0.7, in its own
  virtualenv ``/tmp/modelgate-bench-evidently``, created by this script), whose per-column
  test is normalized Wasserstein > 0.1 above 1,000 rows;
- false alarms: 200 windows of 1,000 undrifted rows against a 100,000-row reference.

Both sides must flag exactly the shifted features. Targets: all statistics for 1,000,000
rows x 20 features under 1.5 s, at least 50x faster than Evidently at 100,000 rows, at most
1% of undrifted windows with any drifted feature.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVIDENTLY_VENV = Path("/tmp/modelgate-bench-evidently")
FEATURES, SHIFTED, SHIFT = 20, 5, 0.5

DATA = textwrap.dedent("""
    import numpy as np
    def frames(rows, seed=7):
        # Column-major, as a DataFrame holds one dtype's columns: both libraries get their
        # data in their natural layout, built before the clock starts.
        rng = np.random.default_rng(seed)
        reference = rng.normal(size=({features}, rows)).T  # (no transient copy)
        current = rng.normal(size=({features}, rows)).T
        current[:, :{shifted}] += {shift}
        return reference, current
    def peak_mb():
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
""").format(features=FEATURES, shifted=SHIFTED, shift=SHIFT)

OURS = DATA + textwrap.dedent("""
    import json, statistics, sys, time
    sys.path.insert(0, sys.argv[1])
    from ops import drift
    rows, repeat, mode = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    before = peak_mb()
    reference, current = frames(rows)
    data_mb = peak_mb() - before
    names = [f"f{i}" for i in range(reference.shape[1])]
    times = []
    if mode == "samples":
        for _ in range(repeat):
            t = time.perf_counter()
            report = drift.compare_samples(reference, current, names)
            times.append(time.perf_counter() - t)
    else:
        # What the worker has: the baseline profile's 10 quantile bins with their counts,
        # and the live counts per bin from Prometheus.
        edges = [drift.quantile_edges(reference[:, j], 10) for j in range(len(names))]
        baseline = [drift.bin_column(reference[:, j], edges[j]) for j in range(len(names))]
        live = [drift.bin_column(current[:, j], edges[j]) for j in range(len(names))]
        std = [float(reference[:, j].std()) for j in range(len(names))]
        for _ in range(repeat):
            t = time.perf_counter()
            report = drift.compare_histograms(baseline, live, names, edges=edges,
                                              reference_std=std)
            times.append(time.perf_counter() - t)
    print(json.dumps({"seconds": statistics.median(times), "peak_mb": peak_mb() - before - data_mb,
                      "drifted": sorted(f.name for f in report.features if f.drifted)}))
""")

FALSE_ALARMS = DATA + textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    from ops import drift
    rng = np.random.default_rng(11)
    reference = rng.normal(size=(100_000, 20))
    alarms = dataset = 0
    for _ in range(200):
        report = drift.compare_samples(reference, rng.normal(size=(1000, 20)))
        alarms += any(f.drifted for f in report.features)
        dataset += bool(report.dataset_drift)
    print(json.dumps({"windows": 200, "any_feature": alarms, "dataset": dataset}))
""")

EVIDENTLY = DATA + textwrap.dedent("""
    import json, statistics, sys, time, warnings
    warnings.filterwarnings("ignore")
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset
    rows, repeat = int(sys.argv[1]), int(sys.argv[2])
    before = peak_mb()
    reference, current = frames(rows)
    names = [f"f{i}" for i in range(reference.shape[1])]
    reference = pd.DataFrame(reference, columns=names)
    current = pd.DataFrame(current, columns=names)
    data_mb = peak_mb() - before
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        snapshot = Report([DataDriftPreset()]).run(current_data=current,
                                                   reference_data=reference)
        result = snapshot.dict()
        times.append(time.perf_counter() - t)
    drifted = []
    for metric in result["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            if metric["value"] > config.get("threshold", 0.1):
                drifted.append(config["column"])
    print(json.dumps({"seconds": statistics.median(times), "peak_mb": peak_mb() - before - data_mb,
                      "drifted": sorted(drifted)}))
""")


def ensure_evidently() -> Path | None:
    python = EVIDENTLY_VENV / "bin" / "python"
    check = [str(python), "-c", "from evidently import Report"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    # Evidently 0.7 imports a pandas helper that pandas 2.3 removed.
    packages = ["evidently>=0.7,<0.8", "pandas<2.3"]
    print(f"creating {EVIDENTLY_VENV} with {' '.join(packages)} (a minute or two)...",
          flush=True)
    uv = ROOT / ".venv" / "bin" / "uv"
    try:
        if uv.exists():
            subprocess.run([str(uv), "venv", "--python", sys.executable, str(EVIDENTLY_VENV)],
                           check=True, capture_output=True)
            subprocess.run([str(uv), "pip", "install", "--python", str(python), *packages],
                           check=True, capture_output=True)
        else:
            subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
    except subprocess.CalledProcessError as e:
        print("!! installing Evidently failed: "
              + (e.stderr or b"").decode(errors="replace")[-2000:], flush=True)
        return None
    return python if subprocess.run(check, capture_output=True).returncode == 0 else None


def run(python: str, code: str, *args) -> dict:
    done = subprocess.run([python, "-c", code, *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": os.environ.get(
                              "OMP_NUM_THREADS", "1")})
    if done.returncode != 0:
        raise SystemExit(f"measurement failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-evidently-at", type=int, nargs="*", default=[],
                        help="row counts at which Evidently is not run (it takes minutes)")
    parser.add_argument("--skip-evidently", action="store_true")
    args = parser.parse_args()
    expected = [f"f{i}" for i in range(SHIFTED)]
    evidently = None if args.skip_evidently else ensure_evidently()

    print(f"{FEATURES} numeric features, features 0-{SHIFTED - 1} shifted by {SHIFT} sd; "
          f"median of {args.repeat}; peak = extra resident memory of the measurement\n")
    print(f"{'rows':>9}  {'what':<34} {'seconds':>8} {'peak MB':>8}  drifted as expected")
    for rows in args.rows:
        ours = run(sys.executable, OURS, ROOT, rows, args.repeat, "samples")
        counts = run(sys.executable, OURS, ROOT, rows, args.repeat, "histograms")
        for label, result in (("modelgate, all statistics (rows)", ours),
                              ("modelgate, from Prometheus counts", counts)):
            print(f"{rows:>9}  {label:<34} {result['seconds']:>8.3f} {result['peak_mb']:>8.0f}"
                  f"  {result['drifted'] == expected}")
        if evidently and rows not in args.skip_evidently_at:
            repeat = 1 if rows >= 1_000_000 else args.repeat
            theirs = run(str(evidently), EVIDENTLY, rows, repeat)
            print(f"{rows:>9}  {'Evidently DataDriftPreset':<34} {theirs['seconds']:>8.3f} "
                  f"{theirs['peak_mb']:>8.0f}  {theirs['drifted'] == expected}")
            print(f"{'':>9}  -> modelgate is {theirs['seconds'] / ours['seconds']:.0f}x faster "
                  f"(target at 100,000 rows: 50x); same verdicts: "
                  f"{theirs['drifted'] == ours['drifted']}")
        if rows == 1_000_000:
            print(f"{'':>9}  -> 1,000,000 rows x {FEATURES}: {ours['seconds']:.2f} s "
                  f"(target < 1.5 s)")
    alarms = run(sys.executable, FALSE_ALARMS, ROOT)
    print(f"\nfalse alarms on {alarms['windows']} undrifted windows of 1,000 rows: "
          f"{alarms['any_feature']} with any drifted feature "
          f"({alarms['any_feature'] / alarms['windows']:.1%}, target <= 1%), "
          f"{alarms['dataset']} with dataset drift")


if __name__ == "__main__":
    main()
