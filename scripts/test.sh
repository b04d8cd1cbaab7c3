#!/usr/bin/env bash
# Run the whole test suite against PostgreSQL and Redis when they are reachable
# (127.0.0.1 by default), SQLite and no broker otherwise. Called by `make test` and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

probe_pg() {
  $PY - "$1" <<'PYEOF'
import sys, psycopg
try:
    psycopg.connect(sys.argv[1], connect_timeout=2).close()
except Exception as e:
    print(f"PostgreSQL not reachable: {e}", file=sys.stderr)
    sys.exit(1)
PYEOF
}
probe_redis() {
  $PY - "$1" <<'PYEOF'
import sys, redis
try:
    redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
except Exception as e:
    print(f"Redis not reachable: {e}", file=sys.stderr)
    sys.exit(1)
PYEOF
}

PG_URL="${MODELGATE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if probe_pg "$PG_URL"; then
  export DATABASE_URL="${PG_URL%/*}/modelgate"
  export MODELGATE_TEST_DATABASE="${MODELGATE_TEST_DATABASE:-test_modelgate_$$}"
  # Each pytest-xdist worker creates (and drops) its own: test_modelgate_<pid>_gw0, _gw1...
  echo "tests: PostgreSQL (test databases ${MODELGATE_TEST_DATABASE}_gw<N>, one per worker)"
else
  unset DATABASE_URL
  echo "tests: SQLite (PostgreSQL unavailable)"
fi
REDIS="${MODELGATE_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
if probe_redis "$REDIS"; then
  export MODELGATE_TEST_REDIS_URL="$REDIS"
  echo "tests: Redis at $REDIS (key prefixes modelgate-test-$$:gw<N>:, one per worker)"
else
  unset MODELGATE_TEST_REDIS_URL
  echo "tests: Redis unavailable; the real-worker test uses the filesystem broker"
fi
# Workers add their own name to the prefix and get a folder of the data dir each
# (tests/conftest.py: pytest_xdist_setupnodes).
export MODELGATE_REDIS_PREFIX="modelgate-test-$$:"
export MODELGATE_DATA_DIR="$(mktemp -d /tmp/modelgate-test.XXXXXX)"
export CELERY_TASK_ALWAYS_EAGER=true
export MODELGATE_TEST_OUTPUT="${MODELGATE_TEST_OUTPUT:-$PWD/test-output}"
mkdir -p "$MODELGATE_TEST_OUTPUT"
trap 'rm -rf "$MODELGATE_DATA_DIR"' EXIT

$PY -m ruff check --quiet . || { echo "ruff found problems" >&2; exit 1; }
env -u DATABASE_URL $PY manage.py makemigrations --check --dry-run >/dev/null || {
  echo "models and migrations differ: run manage.py makemigrations" >&2; exit 1; }

# Two workers (pytest-xdist), one per core of CI's machine; MODELGATE_TEST_WORKERS=N for
# another count (0 runs everything in this process). Each worker has its own test database,
# Redis key prefix, data folder and ports (tests/conftest.py); a test marked exclusive runs
# while the other worker waits. loadgroup: tests marked xdist_group("name") run one after
# another on one worker. The ten slowest tests are listed at the end.
WORKERS="${MODELGATE_TEST_WORKERS:-2}"
echo "tests: $WORKERS pytest-xdist workers"
set +e
$PY -m pytest -n "$WORKERS" --dist loadgroup --durations=10 "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit "$status"
