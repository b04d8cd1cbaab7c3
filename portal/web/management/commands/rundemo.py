"""Start the whole portal with demo data on the embedded defaults; Ctrl-C stops it all."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from portal import demo


def model_server_pids(serving_dir: Path) -> list[int]:
    pids = []
    for pidfile in serving_dir.glob("*/*/server.pid"):
        try:
            pids.append(int(pidfile.read_text()))
        except ValueError:
            continue
    return pids


def redis_reachable(url: str) -> bool:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping()
        return True
    except (redis.RedisError, OSError, ValueError):
        return False


class Command(BaseCommand):
    help = "Migrate, seed demo data, start web + Celery worker + beat, print the URL and logins."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("MODELGATE_PORT", 8000)))
        parser.add_argument("--host", default=os.environ.get("MODELGATE_HOST", "127.0.0.1"))

    def _stop_model_servers(self):
        """Model servers run in their own sessions (they outlive workers); stop ours too."""
        for pid in model_server_pids(settings.MODELGATE_SERVING_DIR):
            try:
                os.killpg(pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                continue

    def handle(self, *args, host, port, **options):
        env = dict(os.environ)
        env.setdefault("MODELGATE_DATA_DIR", str(settings.DATA_DIR))
        if "CELERY_BROKER_URL" not in os.environ:
            if redis_reachable(settings.REDIS_URL):
                env["CELERY_BROKER_URL"] = settings.REDIS_URL
                self.stdout.write(f"Broker: Redis at {settings.REDIS_URL}")
            else:
                env["CELERY_BROKER_URL"] = "filesystem://"
                self.stdout.write(self.style.WARNING(
                    f"Broker: Redis is not reachable at {settings.REDIS_URL}; using the embedded "
                    f"filesystem broker in {settings.DATA_DIR / 'broker'} (no server needed)."))
        # Children (and this process, for seeding) read the broker from the environment.
        os.environ.update(env)
        settings.CELERY_BROKER_URL = env["CELERY_BROKER_URL"]

        db = settings.DATABASES["default"]
        self.stdout.write(f"Database: {db['ENGINE'].rsplit('.', 1)[-1]} {db['NAME']}")
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Seeding demo data (trains six scikit-learn models the first time)...")
        demo.seed(log=self.stdout.write)

        python = sys.executable
        bin_dir = os.path.dirname(python)
        celery = [os.path.join(bin_dir, "celery"), "-A", "workers"]
        commands = {
            "web": [os.path.join(bin_dir, "gunicorn"), "-c", "python:portal.gunicorn_conf",
                    "portal.wsgi", "--bind", f"{host}:{port}"],
            "worker": [*celery, "worker", "-P", "prefork", "--concurrency", "2",
                       "--without-gossip", "--without-mingle", "--without-heartbeat",
                       "--loglevel", "INFO"],
            "beat": [*celery, "beat", "--loglevel", "INFO", "--schedule",
                     str(settings.DATA_DIR / "celerybeat-schedule")],
        }
        processes = {}
        for name, command in commands.items():
            processes[name] = subprocess.Popen(command, env=env, start_new_session=True)

        def stop(*_):
            self.stdout.write("\nStopping web, worker and beat...")
            for proc in processes.values():
                if proc.poll() is None:
                    proc.terminate()  # each stops its own children (warm shutdown)
            deadline = time.monotonic() + 10
            for proc in processes.values():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
            self._stop_model_servers()
            self.stdout.write("Stopped.")
            sys.exit(0)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)

        url = f"http://{host}:{port}/"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url + "healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.3)
        self.stdout.write(self.style.SUCCESS(f"\nModelgate is running at {url}"))
        self.stdout.write(f"API docs: {url}api/docs/   Admin: {url}admin/")
        self.stdout.write(f"Demo logins (password for all: {demo.DEMO_PASSWORD}):")
        for username, _role, description in demo.DEMO_USERS:
            self.stdout.write(f"  {username:<8} {description}")
        self.stdout.write("Press Ctrl-C to stop every process.\n")
        while True:
            for name, proc in processes.items():
                if proc.poll() is not None:
                    self.stderr.write(f"{name} exited with status {proc.returncode}; stopping.")
                    stop()
            time.sleep(1)
