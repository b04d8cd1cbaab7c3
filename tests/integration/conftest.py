from tests.portal_fixtures import *  # noqa: F401,F403  (fixtures shared with the e2e tests)
