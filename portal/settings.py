"""Settings of the Modelgate portal, all read from the environment (see README)."""

import contextlib
import json
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange as _Exchange
from kombu import Queue as _Queue
from whitenoise.compress import Compressor

from portal.env import env_bool, env_choice, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("MODELGATE_DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
with contextlib.suppress(OSError):  # a mount the portal does not own keeps its own mode
    # The database file, artifacts and datasets: nobody else's to read (a pickle loaded in
    # the sandbox runs as "nobody", ops/sandbox.py).
    DATA_DIR.chmod(0o700)

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG and env_bool("MODELGATE_REQUIRE_SECRET_KEY", False):
        from portal.env import ConfigError

        raise ConfigError("DJANGO_SECRET_KEY must be set")
    # Development and demo only: production profiles set MODELGATE_REQUIRE_SECRET_KEY.
    SECRET_KEY = "insecure-dev-key-change-me-" + "x" * 24
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# Transport security. MODELGATE_HTTPS=true when the portal is reached over TLS (production):
# cookies only travel over HTTPS, browsers are told to stay on HTTPS (HSTS), plain HTTP is
# redirected (except the probes and /metrics, which the cluster calls on the pod's port).
HTTPS = env_bool("MODELGATE_HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SESSION_COOKIE_HTTPONLY = CSRF_COOKIE_HTTPONLY = True  # no script reads either cookie
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("MODELGATE_SESSION_SECONDS", 12 * 3600)
SECURE_SSL_REDIRECT = HTTPS and env_bool("MODELGATE_SSL_REDIRECT", True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("MODELGATE_HSTS_SECONDS", 31_536_000) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS and env_bool("MODELGATE_HSTS_SUBDOMAINS", True)
# "preload" only marks the site as eligible: submitting it to browsers is a separate act.
SECURE_HSTS_PRELOAD = HTTPS and env_bool("MODELGATE_HSTS_PRELOAD", True)
if env_bool("MODELGATE_BEHIND_PROXY", False):
    # Only behind a proxy that sets (and strips from clients) X-Forwarded-Proto and -For.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "portal.accounts",
    "portal.audit",
    "portal.registry",
    "portal.releases",
    "portal.notifications",
    "portal.monitoring",
    "portal.experiments",
    "portal.retraining",
    "portal.api",
    "portal.web",
]

MIDDLEWARE = [
    "portal.observability.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "portal.audit.middleware.RequestContextMiddleware",
    "portal.web.middleware.DomainErrorMiddleware",
    "portal.web.middleware.RefuseNulMiddleware",  # NUL in paths, queries, forms: 404/400
    "axes.middleware.AxesMiddleware",
]
if env_bool("MODELGATE_QUERY_COUNT_HEADER", False):
    # Benchmarks only: adds X-Query-Count to every response.
    MIDDLEWARE.insert(0, "portal.api.middleware.QueryCountMiddleware")

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.web.context_processors.navigation",
            ],
            "builtins": ["portal.web.templatetags.modelgate"],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'modelgate.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Several processes (web, worker, beat) share the file: wait for locks instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    # Parameters bound by the server, and a statement the connection has run five times is
    # prepared, so PostgreSQL reuses its plan. Planning the portal's joined list
    # queries cost 4-7 ms each, more than running them (benchmarks/portal_load.py). Behind
    # PgBouncer in transaction mode, this needs PgBouncer 1.21+ (max_prepared_statements),
    # or turn it off.
    #
    # Prepared, but PostgreSQL still plans each execution anew while it estimates a plan for
    # the actual values cheaper than the generic one (plan_cache_mode=auto), which it did for
    # the joined list queries: 2.6-4.7 ms of planning against 0.2-0.3 ms of execution, so
    # preparing saved nothing there. The portal's queries select by keys and memberships,
    # where a generic plan is as good as a custom one, so generic plans are forced. A pooler
    # that refuses the `options` start-up parameter (PgBouncer without
    # ignore_startup_parameters = options) needs MODELGATE_DB_GENERIC_PLANS=false and, in its
    # place, ALTER ROLE ... SET plan_cache_mode = force_generic_plan.
    if env_bool("MODELGATE_DB_PREPARED_STATEMENTS", True):
        _db_options = DATABASES["default"].setdefault("OPTIONS", {})
        _db_options.update(server_side_binding=True, prepare_threshold=5)
        if env_bool("MODELGATE_DB_GENERIC_PLANS", True):
            # Added to any options DATABASE_URL already carries (?options=...).
            _db_options["options"] = " ".join(filter(None, [
                _db_options.get("options", ""), "-c plan_cache_mode=force_generic_plan"]))
TEST_DATABASE_NAME = env_str("MODELGATE_TEST_DATABASE", "")
if TEST_DATABASE_NAME and not DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["TEST"] = {"NAME": TEST_DATABASE_NAME}
elif DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not memory, so worker processes started by integration tests share it.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
# Sign-in lockout (django-axes): after MODELGATE_LOGIN_FAILURES wrong passwords for one
# username from one address, that pair is refused (429) for MODELGATE_LOCKOUT_MINUTES, on
# the login page and on POST /api/v1/auth/token/ alike. A success resets the count.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend",
                           "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("MODELGATE_LOGIN_FAILURES", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("MODELGATE_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
# Failed sign-ins and lockouts one address may add to the audit trail per cool-off; the rest
# are counted only (portal/accounts/signals.py).
MODELGATE_AUDIT_SIGNIN_FAILURES = env_int("MODELGATE_AUDIT_SIGNIN_FAILURES", 30)
LOGIN_REDIRECT_URL = "web:dashboard"
LOGOUT_REDIRECT_URL = "login"

# Single sign-on through OpenID Connect (portal/accounts/oidc.py): on when a client id is
# set. The provider's endpoints are given explicitly (its discovery document lists them);
# the portal's redirect URI is https://<portal>/oidc/callback/.
OIDC_RP_CLIENT_ID = env_str("MODELGATE_OIDC_CLIENT_ID", "")
if OIDC_RP_CLIENT_ID:
    OIDC_RP_CLIENT_SECRET = env_str("MODELGATE_OIDC_CLIENT_SECRET", "")
    OIDC_OP_AUTHORIZATION_ENDPOINT = env_str("MODELGATE_OIDC_AUTHORIZATION_ENDPOINT", "")
    OIDC_OP_TOKEN_ENDPOINT = env_str("MODELGATE_OIDC_TOKEN_ENDPOINT", "")
    OIDC_OP_USER_ENDPOINT = env_str("MODELGATE_OIDC_USERINFO_ENDPOINT", "")
    OIDC_OP_JWKS_ENDPOINT = env_str("MODELGATE_OIDC_JWKS_ENDPOINT", "")
    AUTHENTICATION_BACKENDS = [*AUTHENTICATION_BACKENDS, "portal.accounts.oidc.PortalOIDCBackend"]
MODELGATE_OIDC_ISSUER = env_str("MODELGATE_OIDC_ISSUER", "")
MODELGATE_OIDC_NAME = env_str("MODELGATE_OIDC_NAME", "single sign-on")
OIDC_RP_SIGN_ALGO = env_str("MODELGATE_OIDC_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = "openid email profile"
OIDC_CREATE_USER = env_bool("MODELGATE_OIDC_CREATE_USERS", True)
OIDC_TIMEOUT = env_int("MODELGATE_OIDC_TIMEOUT", 10)
OIDC_AUTHENTICATION_CALLBACK_URL = "oidc-callback"
LOGIN_REDIRECT_URL_FAILURE = "/login/?sso=failed"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("MODELGATE_STATIC_ROOT", "") or DATA_DIR / "static")
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
# collectstatic (the image's build, `make demo`) writes every file under a name with its
# content's hash, with .gz and .br copies: WhiteNoise serves them compressed and cacheable for
# a year. Before any collectstatic (a checkout's runserver, the tests) pages link the plain
# names and WhiteNoise serves them from the folders they live in (portal/web/staticstorage.py).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "portal.web.staticstorage.StaticStorage"},
}
WHITENOISE_USE_FINDERS = not (STATIC_ROOT / "staticfiles.json").exists()
# Source maps (Swagger UI's, ReDoc's: 4 MB) are only read by developer tools: not compressed.
WHITENOISE_SKIP_COMPRESS_EXTENSIONS = (*Compressor.SKIP_COMPRESS_EXTENSIONS, "map")
# The favicon browsers ask for at /favicon.ico (pages that do not name one: the admin, API).
WHITENOISE_ROOT = BASE_DIR / "static" / "root"
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
]

# Uploads: files above 2.5 MB spool to disk; the artifact limit is checked while streaming.
MODELGATE_MAX_ARTIFACT_BYTES = env_int("MODELGATE_MAX_ARTIFACT_BYTES", 200 * 1024 * 1024)
MODELGATE_MAX_DATASET_BYTES = env_int("MODELGATE_MAX_DATASET_BYTES", 500 * 1024 * 1024)
# What a dataset may hold (ops.profile.DatasetLimits), checked before pandas reads it where
# the format allows (CSV header, Parquet footer and dictionaries); profiling reads it in a
# child process that may add MODELGATE_DATASET_MEMORY_MB and must finish in
# MODELGATE_DATASET_PROFILE_SECONDS. A million rows is what drift is measured and
# benchmarked at (decision 20); 20 million values is that by 20 features (160 MB as
# floats); 2,000 columns is more than any tabular model here takes.
MODELGATE_DATASET_MAX_ROWS = env_int("MODELGATE_DATASET_MAX_ROWS", 1_000_000)
MODELGATE_DATASET_MAX_COLUMNS = env_int("MODELGATE_DATASET_MAX_COLUMNS", 2_000)
MODELGATE_DATASET_MAX_CELLS = env_int("MODELGATE_DATASET_MAX_CELLS", 20_000_000)
MODELGATE_DATASET_MAX_CELL_CHARS = env_int("MODELGATE_DATASET_MAX_CELL_CHARS", 100_000)
MODELGATE_DATASET_MAX_UNPACKED_BYTES = env_int("MODELGATE_DATASET_MAX_UNPACKED_BYTES",
                                               512 * 1024 * 1024)
MODELGATE_DATASET_MEMORY_MB = env_int("MODELGATE_DATASET_MEMORY_MB", 1536)
MODELGATE_DATASET_PROFILE_SECONDS = env_int("MODELGATE_DATASET_PROFILE_SECONDS", 120)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_TEMP_DIR = None

# Artifact store: local directory by default, S3 when MODELGATE_ARTIFACT_BUCKET is set.
MODELGATE_ARTIFACT_ROOT = Path(env_str("MODELGATE_ARTIFACT_ROOT", str(DATA_DIR / "artifacts")))
MODELGATE_ARTIFACT_BUCKET = env_str("MODELGATE_ARTIFACT_BUCKET", "")
MODELGATE_ARTIFACT_PREFIX = env_str("MODELGATE_ARTIFACT_PREFIX", "modelgate")
MODELGATE_SKOPS_TRUSTED_TYPES = env_list("MODELGATE_SKOPS_TRUSTED_TYPES", [])
# Pickle/joblib artifacts run code when loaded: off for the whole instance unless the operator
# enables them, and then only staff may allow them for a project. Each is loaded once, in a
# confined child process (ops/sandbox.py), and converted to skops; nothing loads it again.
MODELGATE_ALLOW_UNSAFE_ARTIFACTS = env_bool("MODELGATE_ALLOW_UNSAFE_ARTIFACTS", False)
MODELGATE_SANDBOX_MEMORY_MB = env_int("MODELGATE_SANDBOX_MEMORY_MB", 4096)
MODELGATE_SANDBOX_CPU_SECONDS = env_int("MODELGATE_SANDBOX_CPU_SECONDS", 120)
MODELGATE_SANDBOX_SECONDS = env_int("MODELGATE_SANDBOX_SECONDS", 180)  # inside validation's 300 s
MODELGATE_SANDBOX_USER = env_str("MODELGATE_SANDBOX_USER", "nobody")
MODELGATE_VALIDATION_SAMPLE_ROWS = env_int("MODELGATE_VALIDATION_SAMPLE_ROWS", 20)

# Rollouts: where the local backend keeps its model-server state, and the Prometheus that
# analysis reads (unset: every analysis is inconclusive and rollouts pause for a person).
MODELGATE_SERVING_DIR = Path(env_str("MODELGATE_SERVING_DIR", str(DATA_DIR / "serving")))
# Deployment targets: the machine-level connections (kubeconfig, API hosts, images, roles,
# local port ranges) operators define; environments choose one (portal/releases/targets.py).
# Unset: one local target on ports 9100-9999.
try:
    MODELGATE_TARGETS = json.loads(env_str("MODELGATE_TARGETS", "") or "null")
except ValueError as e:
    raise ImproperlyConfigured(f"MODELGATE_TARGETS is not valid JSON: {e}") from e
MODELGATE_PROMETHEUS_URL = env_str("MODELGATE_PROMETHEUS_URL", "")
MODELGATE_PROMETHEUS_TOKEN = env_str("MODELGATE_PROMETHEUS_TOKEN", "")
# Beat re-queues a rollout whose next decision is this many seconds late.
MODELGATE_RECONCILE_GRACE_SECONDS = env_int("MODELGATE_RECONCILE_GRACE_SECONDS", 30)
# A release request is refused (400) when its rollout would check the candidate more often
# than this, or take more canary steps (ops.rollout.RolloutLimits has the other bounds).
MODELGATE_ROLLOUT_MIN_CHECK_SECONDS = float(env_int("MODELGATE_ROLLOUT_MIN_CHECK_SECONDS", 5))
MODELGATE_ROLLOUT_MAX_STEPS = env_int("MODELGATE_ROLLOUT_MAX_STEPS", 20)
# ...or when a canary step would bake less than this (and one check interval): an analysis
# reads at least the last 30 s (ops.rollout.spec.MIN_ANALYSIS_WINDOW_SECONDS), so a shorter
# step is judged on the traffic of the step before.
MODELGATE_ROLLOUT_MIN_BAKE_SECONDS = float(env_int("MODELGATE_ROLLOUT_MIN_BAKE_SECONDS", 30))

# Notification email goes through Django's backend; the console backend prints it to the log,
# the file backend (the demo's) writes each message under EMAIL_FILE_PATH.
EMAIL_BACKEND = env_str("MODELGATE_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_FILE_PATH = DATA_DIR / "mail"
DEFAULT_FROM_EMAIL = env_str("MODELGATE_FROM_EMAIL", "modelgate@localhost")
# The address people open the portal at: links in e-mails start with it. By default the first
# trusted origin (the public address of an installation behind a proxy), else gunicorn's.
MODELGATE_BASE_URL = (env_str("MODELGATE_BASE_URL", "") or next(iter(CSRF_TRUSTED_ORIGINS), "")
                      or "http://127.0.0.1:8000").rstrip("/")
# Retraining targets (portal/retraining/targets.py): the orchestrators rules may start runs
# on, with their addresses and credentials, JSON {"name": {"kind": "airflow", ...}}; unset:
# none (a rule may still use its own signed webhook). Beat looks at the rules this often.
try:
    MODELGATE_RETRAINING_TARGETS = json.loads(env_str("MODELGATE_RETRAINING_TARGETS", "")
                                              or "null")
except ValueError as e:
    raise ImproperlyConfigured(f"MODELGATE_RETRAINING_TARGETS is not valid JSON: {e}") from e
MODELGATE_RETRAINING_CHECK_SECONDS = env_int("MODELGATE_RETRAINING_CHECK_SECONDS", 60)
# Webhooks to loopback, private or link-local addresses are refused unless this is set.
MODELGATE_WEBHOOK_ALLOW_PRIVATE = env_bool("MODELGATE_WEBHOOK_ALLOW_PRIVATE", False)
# MLflow as the training side (decision 66). The operator's tracking server, with MLflow's
# own variable names; its credentials go to it alone, never to an address an owner typed.
# Other servers must be on public addresses unless MODELGATE_MLFLOW_ALLOW_PRIVATE is set.
MLFLOW_TRACKING_URI = env_str("MLFLOW_TRACKING_URI", "").rstrip("/")
MLFLOW_TRACKING_TOKEN = env_str("MLFLOW_TRACKING_TOKEN", "")
MLFLOW_TRACKING_USERNAME = env_str("MLFLOW_TRACKING_USERNAME", "")
MLFLOW_TRACKING_PASSWORD = env_str("MLFLOW_TRACKING_PASSWORD", "")
MODELGATE_MLFLOW_ALLOW_PRIVATE = env_bool("MODELGATE_MLFLOW_ALLOW_PRIVATE", False)
MODELGATE_MLFLOW_POLL_SECONDS = env_int("MODELGATE_MLFLOW_POLL_SECONDS", 300)
MODELGATE_MLFLOW_TIMEOUT = env_int("MODELGATE_MLFLOW_TIMEOUT", 30)
# Follows per model (each is polled every MODELGATE_MLFLOW_POLL_SECONDS).
MODELGATE_MLFLOW_MAX_FOLLOWS = env_int("MODELGATE_MLFLOW_MAX_FOLLOWS", 10)
# Model servers sign prediction ids with a key per endpoint derived from this secret, so
# feedback cannot name a variant of its choosing. Changing it invalidates the ids issued
# before (their feedback is refused): set it once, apart from DJANGO_SECRET_KEY if that
# one is rotated.
MODELGATE_PREDICTION_ID_SECRET = env_str("MODELGATE_PREDICTION_ID_SECRET", "") or SECRET_KEY
# API tokens: default and longest lifetime, in days.
MODELGATE_TOKEN_DAYS = env_int("MODELGATE_TOKEN_DAYS", 90)
MODELGATE_TOKEN_MAX_DAYS = env_int("MODELGATE_TOKEN_MAX_DAYS", 365)
# Days an invitation to a project stays open for the invited person to accept or decline.
MODELGATE_INVITATION_DAYS = env_int("MODELGATE_INVITATION_DAYS", 14)
# Largest batch of POST /api/v1/feedback/.
MODELGATE_FEEDBACK_MAX_BATCH = env_int("MODELGATE_FEEDBACK_MAX_BATCH", 10_000)
# Feedback moves the A/B test's sequential p-value (its running minimum) at most this often
# per test; every readout moves it too. Any set of looks keeps the p-value valid.
MODELGATE_AB_LOOK_SECONDS = env_int("MODELGATE_AB_LOOK_SECONDS", 5)
# A/B results (readout, outcome over time, explanations) are computed at most this often
# per test and shared by every viewer; 0 computes them on every view.
MODELGATE_AB_READOUT_SECONDS = env_int("MODELGATE_AB_READOUT_SECONDS", 2)
# SMTP, when MODELGATE_EMAIL_BACKEND is django.core.mail.backends.smtp.EmailBackend.
EMAIL_HOST = env_str("MODELGATE_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("MODELGATE_EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("MODELGATE_EMAIL_USER", "")
EMAIL_HOST_PASSWORD = env_str("MODELGATE_EMAIL_PASSWORD", "")
EMAIL_USE_TLS = env_bool("MODELGATE_EMAIL_TLS", False)
EMAIL_TIMEOUT = env_int("MODELGATE_EMAIL_TIMEOUT", 10)

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
# The cache holds rate-limit counts: Redis (shared by every web process) when the broker is
# Redis, this process's memory otherwise (the embedded demo).
CACHE_URL = env_str("MODELGATE_CACHE_URL",
                    REDIS_URL if CELERY_BROKER_URL.startswith("redis") else "")
CACHES = {"default": (
    {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL,
     "KEY_PREFIX": env_str("MODELGATE_REDIS_PREFIX", "modelgate:") + "cache",
     "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2}}
    if CACHE_URL else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"})}
if CACHE_URL:
    # Sessions read from Redis (written through to the database, which stays the record): a
    # query less on every page. With Redis away, Django reads the database instead.
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # Embedded fallback when no Redis is reachable: a folder shared by web and worker.
    _broker_dir = DATA_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        "polling_interval": 0.1,
    }
elif CELERY_BROKER_URL.startswith("redis"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "global_keyprefix": env_str("MODELGATE_REDIS_PREFIX", "modelgate:"),
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
        # An unacknowledged task (its worker died) is delivered again after this long;
        # longer than any task runs (SHAP has a one-minute limit) and than any countdown.
        "visibility_timeout": env_int("MODELGATE_TASK_REDELIVERY_SECONDS", 600),
        # Workers look for such tasks every 10 s. kombu scans only on every tenth look by
        # default, so a task could wait 100 s past its timeout: scan on every look.
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 1,
    }
# A dead broker must not stall a web request for long: the work stays recorded as pending
# and the periodic requeue sends it again once the broker is back.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2,
                                    "interval_max": 0.5}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
# How the portal queues work (portal/queue.py): through the broker, or, where tasks run
# eagerly (the tests: scripts/test.sh sets CELERY_TASK_ALWAYS_EAGER), in this process once
# the transaction commits, follow-ups with a countdown left to the test.
MODELGATE_TASK_QUEUE = ("portal.queue.EagerQueue" if CELERY_TASK_ALWAYS_EAGER
                        else "portal.queue.CeleryQueue")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = env_str("MODELGATE_CELERY_QUEUE", "modelgate")
# Rollouts, rollbacks and alert handling have a queue of their own, so a rollback never
# waits behind a SHAP computation, a release diff or a profile (the default queue's work).
# A worker started without -Q consumes both; the demo and the manifests run one worker per
# queue (-Q).
MODELGATE_ROLLOUT_QUEUE = env_str("MODELGATE_ROLLOUT_QUEUE", f"{CELERY_TASK_DEFAULT_QUEUE}-rollouts")
ROLLOUT_TASKS = ("workers.releases.start_deployment", "workers.releases.advance_deployment",
                 "workers.releases.reconcile_deployments", "workers.releases.expire_requests",
                 "workers.monitoring.poll_alerts", "workers.releases.apply_multimodel_endpoint")
CELERY_TASK_ROUTES = {name: {"queue": MODELGATE_ROLLOUT_QUEUE} for name in ROLLOUT_TASKS}
# Each queue on an exchange and routing key of its own (Celery would otherwise bind both to
# the default queue's, and a message sent there would reach both).
CELERY_TASK_QUEUES = [_Queue(name, _Exchange(name), routing_key=name)
                      for name in (CELERY_TASK_DEFAULT_QUEUE, MODELGATE_ROLLOUT_QUEUE)]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A task is acknowledged once it has run, not when a worker took it: a worker killed in the
# middle (SIGKILL, out of memory, eviction) leaves it to be delivered again. Every task is
# safe to run twice: rollout steps are claimed by step_id, validation, profiles,
# explanations and diffs overwrite their own result, periodic jobs recompute; webhooks and
# emails are at-least-once (each delivery carries its id in X-Modelgate-Delivery).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Bounded work (docs/architecture.md, "Bounded work"): every task has a soft and a hard time
# limit, these by default, tighter or looser per task in workers/*.py; a prefork child is
# replaced after a task that left it holding more than MODELGATE_WORKER_MAX_MEMORY_MB; the
# heavy libraries are imported before the pool forks (portal/celery.py), and a child gets
# MODELGATE_WORKER_START_SECONDS to come up (Celery's default of 4 s was not enough on a
# busy machine).
CELERY_TASK_SOFT_TIME_LIMIT = env_int("MODELGATE_TASK_SOFT_TIME_LIMIT", 300)
CELERY_TASK_TIME_LIMIT = env_int("MODELGATE_TASK_TIME_LIMIT", CELERY_TASK_SOFT_TIME_LIMIT + 60)
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env_int("MODELGATE_WORKER_MAX_MEMORY_MB", 1024) * 1024
CELERY_WORKER_PROC_ALIVE_TIMEOUT = float(env_int("MODELGATE_WORKER_START_SECONDS", 30))
MODELGATE_WORKER_PRELOAD = env_list("MODELGATE_WORKER_PRELOAD", [
    "numpy", "pandas", "pyarrow.parquet", "scipy.stats", "sklearn.ensemble",
    "sklearn.linear_model", "skops.io", "portal.registry.services",
    "portal.releases.deployments"])
# SHAP explanations: computed by a worker for every version that becomes ready.
MODELGATE_EXPLAIN_VERSIONS = env_bool("MODELGATE_EXPLAIN_VERSIONS", True)
MODELGATE_EXPLANATION_SAMPLE_ROWS = env_int("MODELGATE_EXPLANATION_SAMPLE_ROWS", 500)
MODELGATE_RELEASE_DIFF_ROWS = env_int("MODELGATE_RELEASE_DIFF_ROWS", 5000)

# Monitoring. A Prometheus the portal manages reads targets and rules from this directory
# (see ops/prometheus.py); empty: the portal writes nothing and only reads Prometheus.
MODELGATE_PROMETHEUS_CONFIG_DIR = env_str("MODELGATE_PROMETHEUS_CONFIG_DIR", "")
MODELGATE_PROMETHEUS_TIMEOUT = float(env_int("MODELGATE_PROMETHEUS_TIMEOUT", 5))
# Shared secret of the Alertmanager webhook receiver (Authorization: Bearer <token>); empty:
# the receiver refuses every call.
MODELGATE_ALERTMANAGER_TOKEN = env_str("MODELGATE_ALERTMANAGER_TOKEN", "")
# Bearer token Prometheus must send to scrape the portal's /metrics; empty: open in
# development, closed (403, and a start-up warning) in the production profile.
MODELGATE_METRICS_TOKEN = env_str("MODELGATE_METRICS_TOKEN", "")
# The production profile (deploy/kubernetes/config.yaml): TLS or a required secret key.
MODELGATE_PRODUCTION = not DEBUG and (HTTPS or env_bool("MODELGATE_REQUIRE_SECRET_KEY", False))
MODELGATE_DRIFT_INTERVAL_SECONDS = env_int("MODELGATE_DRIFT_INTERVAL_SECONDS", 30)
MODELGATE_DRIFT_STALE_SECONDS = env_int("MODELGATE_DRIFT_STALE_SECONDS",
                                        4 * MODELGATE_DRIFT_INTERVAL_SECONDS)
MODELGATE_ALERT_POLL_SECONDS = env_int("MODELGATE_ALERT_POLL_SECONDS", 15)
MODELGATE_ALERT_FOR_SECONDS = env_int("MODELGATE_ALERT_FOR_SECONDS", 60)
MODELGATE_DRIFT_FOR_SECONDS = env_int("MODELGATE_DRIFT_FOR_SECONDS", 60)
MODELGATE_PROMETHEUS_SYNC_SECONDS = env_int("MODELGATE_PROMETHEUS_SYNC_SECONDS", 30)

# Retention (portal/retention.py), applied by beat every hour; 0 keeps everything.
MODELGATE_DRIFT_RETENTION_DAYS = env_int("MODELGATE_DRIFT_RETENTION_DAYS", 90)
MODELGATE_OUTCOME_RETENTION_DAYS = env_int("MODELGATE_OUTCOME_RETENTION_DAYS", 30)

# The audit chain's HMAC keys, outside the database (portal/audit/keys.py):
# "<key id>:<secret>,<old id>:<old secret>", the first signs. Unset: a key derived from
# DJANGO_SECRET_KEY (the production profile warns, modelgate.W102). Beat writes the chain's
# head to the artifact store, or to this bucket (with Object Lock), every N seconds.
MODELGATE_AUDIT_KEYS = env_str("MODELGATE_AUDIT_KEYS", "")
MODELGATE_AUDIT_CHECKPOINT_BUCKET = env_str("MODELGATE_AUDIT_CHECKPOINT_BUCKET", "")
MODELGATE_AUDIT_CHECKPOINT_SECONDS = env_int("MODELGATE_AUDIT_CHECKPOINT_SECONDS", 3600)

CELERY_BEAT_SCHEDULE = {
    "apply-retention": {"task": "workers.monitoring.apply_retention", "schedule": 3600.0},
    "requeue-stuck-work": {"task": "workers.registry.requeue_stuck_work", "schedule": 60.0},
    "expire-approval-requests": {"task": "workers.releases.expire_requests", "schedule": 300.0},
    "reconcile-deployments": {"task": "workers.releases.reconcile_deployments",
                              "schedule": 30.0},
    "requeue-webhook-deliveries": {"task": "workers.notifications.requeue_deliveries",
                                   "schedule": 60.0},
    "sync-prometheus": {"task": "workers.monitoring.sync_prometheus",
                        "schedule": float(MODELGATE_PROMETHEUS_SYNC_SECONDS)},
    "compute-drift": {"task": "workers.monitoring.compute_drift",
                      "schedule": float(MODELGATE_DRIFT_INTERVAL_SECONDS)},
    "poll-alerts": {"task": "workers.monitoring.poll_alerts",
                    "schedule": float(MODELGATE_ALERT_POLL_SECONDS)},
    "checkpoint-audit-chain": {"task": "workers.monitoring.checkpoint_audit_chain",
                               "schedule": float(max(MODELGATE_AUDIT_CHECKPOINT_SECONDS, 1))},
    "poll-mlflow-follows": {"task": "workers.registry.poll_mlflow_follows",
                            "schedule": float(max(MODELGATE_MLFLOW_POLL_SECONDS, 1))},
    "evaluate-retraining-rules": {"task": "workers.retraining.evaluate_rules",
                                  "schedule": float(max(MODELGATE_RETRAINING_CHECK_SECONDS, 1))},
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated",
                                   "portal.accounts.permissions.TokenScopes"],
    "DEFAULT_THROTTLE_CLASSES": ["portal.accounts.throttling.AccountThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "tokens": env_str("MODELGATE_RATE_TOKENS", "20/hour"),
        "uploads": env_str("MODELGATE_RATE_UPLOADS", "120/hour"),
        "explain": env_str("MODELGATE_RATE_EXPLAIN", "60/min"),
        "feedback": env_str("MODELGATE_RATE_FEEDBACK", "600/min"),
    },
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "portal.api.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "portal.api.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "portal.api.schema.PortalAutoSchema",
    # JSON bodies only; the uploads (a version's artifact, a dataset) take multipart on
    # their own actions. A route that also took forms made the schema declare every JSON
    # body as multipart and form too, which generated clients cannot use (issue 15).
    "DEFAULT_PARSER_CLASSES": [
        "portal.api.parsers.JSONParser",  # refuses NUL characters (PostgreSQL stores none)
    ],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",  # APIClient bodies as real clients send them
    "DEFAULT_RENDERER_CLASSES": [
        "portal.api.renderers.JSONRenderer",  # DRF's JSON, written by orjson
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Modelgate API",
    "DESCRIPTION": "Model registry, releases and monitoring. Authenticate with "
    "`Authorization: Token <token>` (get one from POST /api/v1/auth/token/).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "portal.api.schema.add_error_responses"],
    # Two choice sets are called "decision": a review's and an A/B test's.
    "ENUM_NAME_OVERRIDES": {
        "ReviewDecisionEnum": "portal.releases.choices.Decision",
        "ExperimentDecisionEnum": "portal.experiments.choices.DecisionChoice",
        # A version's status is in two components (a version, and its detail with serving).
        "ModelVersionStatusEnum": "portal.registry.choices.VersionStatus",
        # Issue 15: every fixed set is an enum, named here so none is named by a hash.
        "DeploymentStatusEnum": "portal.releases.choices.DeploymentStatus",
        "ExperimentStatusEnum": "portal.experiments.choices.ExperimentStatus",
        "EvaluationStatusEnum": "portal.registry.choices.EvaluationStatus",
        "ExplanationStatusEnum": "portal.registry.choices.ExplanationStatus",
        # Retraining's trigger state and target kind would take these two names by hash:
        # the alerts' state and the outcomes' kind keep them (decision 67).
        "StateEnum": "portal.monitoring.choices.AlertState",
        "KindEnum": "portal.experiments.choices.OutcomeKind",
        "RetrainingTriggerStateEnum": "portal.retraining.choices.TriggerState",
        "RetrainingConditionEnum": "portal.retraining.choices.Condition",
        "RetrainingTargetKindEnum": "portal.retraining.choices.kind_choices",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    # Any case: the manifests' "info" is INFO; an unknown level stops start-up by name.
    "root": {"handlers": ["console"],
             "level": env_choice("MODELGATE_LOG_LEVEL", "INFO",
                                 ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# Content-Security-Policy (django-csp): no inline or foreign script anywhere; pages load
# their scripts from /static/. Styles allow inline because Plotly.js sets them at run time.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
