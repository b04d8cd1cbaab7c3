# Modelgate portal image: web (gunicorn), worker and beat (Celery) from one image.
#
# Build from the repository root:   docker build -t modelgate-portal .
# web:     (default command)        gunicorn on 0.0.0.0:8000 with portal/gunicorn_conf.py
# worker:  celery -A portal worker --loglevel INFO
# beat:    celery -A portal beat --loglevel INFO --schedule /tmp/celerybeat-schedule
# migrate: python manage.py migrate --noinput   (the Kubernetes Job in deploy/kubernetes)
# Configuration comes from environment variables, secrets from files (NAME_FILE=path);
# see README "Configuration" and docs/operations.md.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=portal.settings \
    MODELGATE_DATA_DIR=/var/lib/modelgate \
    MODELGATE_STATIC_ROOT=/opt/modelgate/staticfiles \
    MODELGATE_BIND=0.0.0.0:8000 \
    HOME=/tmp \
    NUMBA_CACHE_DIR=/tmp/numba \
    MPLCONFIGDIR=/tmp/matplotlib

WORKDIR /opt/modelgate

# pg_dump / pg_restore for manage.py backup and restore (match the server's major version);
# libgomp1, the OpenMP runtime LightGBM's wheel links (workers validate and explain with it).
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# The runtime dependencies only (requirements/runtime.txt: pyproject.toml's dependencies
# compiled by uv, without the test extras), installed before the code for layer caching.
COPY requirements/runtime.txt /tmp/runtime.txt
RUN pip install --no-deps -r /tmp/runtime.txt && rm /tmp/runtime.txt

COPY manage.py pyproject.toml ./
COPY portal/ ./portal/
COPY ops/ ./ops/
COPY explainability/ ./explainability/
COPY workers/ ./workers/
COPY templates/ ./templates/
COPY static/ ./static/
# Static files under content-hashed names with .gz and .br copies (portal/settings.py):
# WhiteNoise serves them compressed with a one-year Cache-Control.
RUN DJANGO_SECRET_KEY=collectstatic-only MODELGATE_DATA_DIR=/tmp/build \
       python manage.py collectstatic --noinput -v 0 \
    && rm -rf /tmp/build

# An unprivileged user; the data directory is a volume (or an emptyDir with S3 artifacts).
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin modelgate \
    && mkdir -p /var/lib/modelgate && chown 10001:10001 /var/lib/modelgate
USER 10001

EXPOSE 8000
CMD ["gunicorn", "-c", "python:portal.gunicorn_conf", "portal.wsgi"]
