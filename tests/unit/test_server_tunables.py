"""Every tunable the model server reads reaches it: the local backend passes it through from
the worker's environment, and a Kubernetes target may set it. (The fast-tree settings and
the batch idle rounds were once read by the server but set by neither.)"""

import re
from pathlib import Path

from ops.backends import kubernetes, local

ROOT = Path(__file__).resolve().parents[2]
# Set by the backend itself, or secrets and switches an operator gives the server directly,
# never through a project's target.
NOT_TUNABLES = {"MODELGATE_PREDICTION_KEY", "MODELGATE_PREDICTION_KEY_FILE",
                "MODELGATE_SERVER_INSTANCE", "MODELGATE_SERVER_ALLOW_PICKLE",
                "MODELGATE_MULTI_MODEL", "MODELGATE_ENDPOINT", "MODELGATE_MEMORY_BUDGET",
                "MODELGATE_TOP_MODELS", "MODELGATE_MAX_BODY_BYTES"}


def server_tunables() -> set[str]:
    names = set()
    for path in (ROOT / "ops" / "serving").glob("*.py"):
        names |= set(re.findall(r"MODELGATE_[A-Z_]*[A-Z]", path.read_text()))
    return names - NOT_TUNABLES


def test_the_local_backend_passes_every_tunable_through():
    tunables = server_tunables()
    assert {"MODELGATE_FAST_TREES", "MODELGATE_BATCH_IDLE_ROUNDS"} <= tunables
    assert tunables - set(local.SERVER_ENV) == set()


def test_a_kubernetes_target_may_set_every_tunable():
    env = kubernetes.KubernetesBackend.PROJECT_SETTINGS["properties"]["env"]
    allowed = set(env["propertyNames"]["enum"])
    assert server_tunables() - {"MODELGATE_MAX_UNPACKED_BYTES"} - allowed == set()
