"""The hostile owner of another project: each attack of issue 18, asserted refused, with
real PostgreSQL, a real worker and real model servers where the attack needs them."""

from tests.integration.local_fixtures import artifact_variant  # noqa: F401
from tests.portal_fixtures import *  # noqa: F401,F403
