"""Start the whole portal with demo data on the embedded defaults; Ctrl-C stops it all."""

import os
import shutil
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
from portal.releases import deployments


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
    help = "Migrate, seed demo data, start web + Celery workers + beat, print the URL and logins."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("MODELGATE_PORT", 8000)))
        parser.add_argument("--host", default=os.environ.get("MODELGATE_HOST", "127.0.0.1"))
        parser.add_argument("--prometheus-port", type=int,
                            default=int(os.environ.get("MODELGATE_DEMO_PROMETHEUS_PORT", 9098)))
        parser.add_argument("--no-traffic", action="store_true",
                            help="do not send synthetic requests to the demo endpoints")

    def _prometheus(self, env: dict, host: str, port: int, prometheus_port: int):
        """A Prometheus the portal manages (targets, rules, reloads), when one is installed
        and none is configured already; returns its command line or None."""
        if env.get("MODELGATE_PROMETHEUS_URL"):
            self.stdout.write(f"Prometheus: {env['MODELGATE_PROMETHEUS_URL']} (configured)")
            return None
        binary = shutil.which("prometheus")
        if binary is None:
            self.stdout.write(self.style.WARNING(
                "Prometheus: not installed, so no monitoring, drift alerts or rollout analysis "
                "(rollouts pause for a person). Install it with `apt-get install prometheus` "
                "(Debian/Ubuntu) or from https://prometheus.io/download/ and start again."))
            return None
        from ops import prometheus

        folder = settings.DATA_DIR / "prometheus"
        prometheus.write_main_config(folder, scrape_interval="5s", evaluation_interval="5s",
                                     portal=f"{host}:{port}")
        url = f"http://127.0.0.1:{prometheus_port}"
        env.update({"MODELGATE_PROMETHEUS_URL": url,
                    "MODELGATE_PROMETHEUS_CONFIG_DIR": str(folder)})
        # Quick enough for a newcomer to see drift alert within about a minute.
        for name, value in (("MODELGATE_DRIFT_INTERVAL_SECONDS", "10"),
                            ("MODELGATE_ALERT_POLL_SECONDS", "5"),
                            ("MODELGATE_ALERT_FOR_SECONDS", "30"),
                            ("MODELGATE_DRIFT_FOR_SECONDS", "10"),
                            ("MODELGATE_PROMETHEUS_SYNC_SECONDS", "10")):
            env.setdefault(name, value)
        self.stdout.write(f"Prometheus: {url} (managed; files in {folder})")
        return [binary, f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}", "--storage.tsdb.retention.time=2d",
                f"--web.listen-address=127.0.0.1:{prometheus_port}", "--web.enable-lifecycle"]

    def _stop_model_servers(self):
        """Model servers run in their own sessions (they outlive workers); stop ours too."""
        for pid in model_server_pids(settings.MODELGATE_SERVING_DIR):
            try:
                os.killpg(pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                continue

    def handle(self, *args, host, port, prometheus_port, no_traffic, **options):
        env = dict(os.environ)
        env.setdefault("MODELGATE_DATA_DIR", str(settings.DATA_DIR))
        if "CELERY_BROKER_URL" not in os.environ:
            env["CELERY_BROKER_URL"] = self._broker()
        prometheus_command = self._prometheus(env, host, port, prometheus_port)
        # Children (and this process, for seeding) read the broker from the environment.
        os.environ.update(env)
        settings.CELERY_BROKER_URL = env["CELERY_BROKER_URL"]
        for name in ("MODELGATE_PROMETHEUS_URL", "MODELGATE_PROMETHEUS_CONFIG_DIR"):
            setattr(settings, name, env.get(name, getattr(settings, name)))
        self._prepare_data()

        commands = self._commands(host, port)
        if prometheus_command:
            commands["prometheus"] = prometheus_command
        if not no_traffic:
            commands["traffic"] = [sys.executable, "manage.py", "demo_traffic"]
        processes = {name: subprocess.Popen(command, env=env, start_new_session=True)
                     for name, command in commands.items()}

        def stop(*_):
            self._stop(processes)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)

        url = f"http://{host}:{port}/"
        wait_until_up(url)
        self._welcome(url, monitoring=bool(prometheus_command))
        while True:
            for name, proc in processes.items():
                if proc.poll() is not None:
                    self.stderr.write(f"{name} exited with status {proc.returncode}; stopping.")
                    stop()
            time.sleep(1)

    def _broker(self) -> str:
        """Redis when it answers, else the embedded filesystem broker (no server needed)."""
        if redis_reachable(settings.REDIS_URL):
            self.stdout.write(f"Broker: Redis at {settings.REDIS_URL}")
            return settings.REDIS_URL
        self.stdout.write(self.style.WARNING(
            f"Broker: Redis is not reachable at {settings.REDIS_URL}; using the embedded "
            f"filesystem broker in {settings.DATA_DIR / 'broker'} (no server needed)."))
        return "filesystem://"

    def _prepare_data(self):
        """Migrate, seed the demo (training its models the first time), and start again the
        model servers of the deployments that were running."""
        db = settings.DATABASES["default"]
        self.stdout.write(f"Database: {db['ENGINE'].rsplit('.', 1)[-1]} {db['NAME']}")
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Seeding demo data (trains six scikit-learn models the first time)...")
        demo.seed(log=self.stdout.write)
        demo.ensure_monitoring()
        restored = deployments.restore_local_servers()
        if restored:
            self.stdout.write(f"Model servers started again: {', '.join(restored)}")

    @staticmethod
    def _commands(host: str, port: int) -> dict[str, list[str]]:
        """The web server, a Celery worker per queue (rollouts never wait behind SHAP) and
        beat."""
        bin_dir = os.path.dirname(sys.executable)
        celery = [os.path.join(bin_dir, "celery"), "-A", "portal"]
        quiet = ["--without-gossip", "--without-mingle", "--without-heartbeat",
                 "--loglevel", "INFO"]
        return {
            "web": [os.path.join(bin_dir, "gunicorn"), "-c", "python:portal.gunicorn_conf",
                    "portal.wsgi", "--bind", f"{host}:{port}"],
            "worker": [*celery, "worker", "-P", "prefork", "--concurrency", "2",
                       "-Q", settings.CELERY_TASK_DEFAULT_QUEUE, "-n", "work@%h", *quiet],
            "rollout-worker": [*celery, "worker", "-P", "prefork", "--concurrency", "2",
                               "-Q", settings.MODELGATE_ROLLOUT_QUEUE, "-n", "rollouts@%h",
                               *quiet],
            "beat": [*celery, "beat", "--loglevel", "INFO", "--schedule",
                     str(settings.DATA_DIR / "celerybeat-schedule")],
        }

    def _stop(self, processes: dict):
        """Stop every process (each stops its own children), the model servers too; exit."""
        self.stdout.write(f"\nStopping {', '.join(processes)}...")
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

    def _welcome(self, url: str, *, monitoring: bool):
        self.stdout.write(self.style.SUCCESS(f"\nModelgate is running at {url}"))
        self.stdout.write(f"API docs: {url}api/docs/   Admin: {url}admin/")
        self.stdout.write(f"Demo logins (password for all: {demo.DEMO_PASSWORD}):")
        for username, _role, description in demo.DEMO_USERS:
            self.stdout.write(f"  {username:<8} {description}")
        if monitoring:
            self.stdout.write("Monitoring: synthetic traffic flows to production; to see a drift "
                              "alert within about a minute run\n  .venv/bin/python manage.py "
                              "inject_drift   (and `inject_drift --stop` to end it)")
        self.stdout.write("Press Ctrl-C to stop every process.\n")


def wait_until_up(url: str, seconds: float = 90) -> None:
    """Until the web server answers its health check, at most ``seconds`` (gunicorn imports
    the heavy libraries before it answers: portal/gunicorn_conf.py)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.3)
