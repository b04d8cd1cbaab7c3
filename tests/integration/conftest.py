from tests.integration.local_fixtures import artifact_variant  # noqa: F401  (backend tests)
from tests.integration.prometheus_fixtures import (  # noqa: F401  (rollout, monitoring tests)
    alertmanager,
    managed_prometheus,
    prometheus,
)
from tests.portal_fixtures import *  # noqa: F401,F403  (fixtures shared with the e2e tests)
