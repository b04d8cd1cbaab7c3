"""Steady synthetic traffic to the demo's production endpoints (rundemo starts it).

Rows are drawn from each model's training data and sent in small batches; ``manage.py inject_drift`` makes it shift some features so that drift shows up.
"""

import json
import time
from pathlib import Path

import numpy as np
import requests
from django.conf import settings
from django.core.management.base import BaseCommand

from portal.monitoring.endpoints import served_endpoints
from portal.registry.storage import get_store
from portal.releases.models import Environment


def drift_file() -> Path:
    return Path(settings.DATA_DIR) / "demo-drift.json"


def read_drift() -> dict:
    try:
        return json.loads(drift_file().read_text())
    except (OSError, ValueError):
        return {}


class Command(BaseCommand):
    help = "Send steady synthetic requests to the served production endpoints (demo)."

    def add_arguments(self, parser):
        parser.add_argument("--environment", default="production")
        parser.add_argument("--rate", type=float, default=10.0, help="requests per second")
        parser.add_argument("--batch", type=int, default=5, help="rows per request")

    def handle(self, *args, environment, rate, batch, **options):
        import pandas as pd

        rng = np.random.default_rng()
        session = requests.Session()
        frames: dict[int, pd.DataFrame] = {}
        endpoints, refreshed = [], 0.0
        self.stdout.write(f"demo traffic: {rate:g} requests/s of {batch} rows to {environment}")
        while True:
            if time.monotonic() - refreshed > 10:  # new rollouts change what serves
                endpoints = [s for s in served_endpoints(
                    Environment.objects.filter(name=environment)) if s.address]
                refreshed = time.monotonic()
            shift = read_drift()
            for served in endpoints:
                version = next(iter(served.variants.values()), None)
                if version is None or not version.dataset_id:
                    continue
                if version.dataset_id not in frames:
                    with get_store().local_path(version.dataset.uri) as path:
                        frames[version.dataset_id] = pd.read_csv(path)
                frame = frames[version.dataset_id]
                features = [f["name"] for f in version.input_schema]
                rows = frame[features].sample(batch, replace=True,
                                              random_state=int(rng.integers(1 << 31)))
                # Rows as they are: jitter would move the many tied values of discrete-ish
                # columns across the baseline's bin edges and look like drift.
                values = rows.to_numpy(dtype=float)
                if shift and shift.get("model") in (None, served.model.name):
                    for name in shift.get("features", []):
                        if name in features:
                            j = features.index(name)
                            values[:, j] += shift.get("shift", 3.0) * frame[name].std()
                try:
                    session.post(f"http://{served.address}/v2/models/{served.endpoint}/infer",
                                 json={"instances": values.tolist()}, timeout=5)
                except requests.RequestException:
                    pass  # the server may be starting or restarting
            time.sleep(1.0 / max(rate, 0.1))
