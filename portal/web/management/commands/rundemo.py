"""Start the whole portal with demo data on the embedded defaults; Ctrl-C stops it all."""

import logging
import os
import shutil
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from portal import demo
from portal.demo_processes import Child, Supervisor, exit_status, tail, where
from portal.releases import deployments
from portal.web.management.commands.demo_traffic import drift_file, read_drift

# The processes the portal runs on without, and what it then goes without.
HELPERS = {"prometheus": "monitoring (Prometheus)", "traffic": "synthetic traffic"}
FILE_MAIL = "django.core.mail.backends.filebased.EmailBackend"


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
        url = f"http://{host}:{port}/"
        # E-mails to the demo users go to files, not into the log; their links to this portal.
        env.setdefault("MODELGATE_EMAIL_BACKEND", FILE_MAIL)
        env.setdefault("MODELGATE_BASE_URL", url.replace("//0.0.0.0:", "//127.0.0.1:"))
        prometheus_command = self._prometheus(env, host, port, prometheus_port)
        # Children (and this process, for seeding) read the broker from the environment.
        os.environ.update(env)
        settings.CELERY_BROKER_URL = env["CELERY_BROKER_URL"]
        settings.EMAIL_BACKEND = env["MODELGATE_EMAIL_BACKEND"]
        settings.MODELGATE_BASE_URL = env["MODELGATE_BASE_URL"].rstrip("/")
        for name in ("MODELGATE_PROMETHEUS_URL", "MODELGATE_PROMETHEUS_CONFIG_DIR"):
            setattr(settings, name, env.get(name, getattr(settings, name)))
        if "MODELGATE_LOG_LEVEL" not in os.environ:  # this process's own INFO lines: in the way
            logging.getLogger().setLevel(logging.WARNING)
        self._prepare_data()

        commands = self._commands(host, port)
        if prometheus_command:
            commands["prometheus"] = prometheus_command
        if not no_traffic:
            commands["traffic"] = [sys.executable, "manage.py", "demo_traffic"]
        lock = threading.Lock()

        def show(line: str) -> None:  # an error a process logged
            with lock:
                self.stderr.write(line)

        def say(line: str) -> None:  # a helper stopped
            with lock:
                self.stdout.write(self.style.WARNING(line))

        processes = Supervisor(
            {name: Child(name, command, env=env, log=self._logs() / f"{name}.log", show=show)
             for name, command in commands.items()}, HELPERS, say=say)
        processes.start()

        def stop(*_, status: int = 0):
            self._stop(processes, status)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)

        self._watch(processes, url, say, stop, lambda: self._welcome(
            url, monitoring=bool(prometheus_command), traffic=not no_traffic))

    def _watch(self, processes, url, say, stop, welcome) -> None:
        """The banner once the web server answers, however long it takes (a busy machine);
        meanwhile and after, a stopped process is started again or stops the demo."""
        welcomed, started, slow = False, time.monotonic(), False
        while True:
            if not welcomed and wait_until_up(
                    url, seconds=1, give_up=lambda: processes.children["web"].stopped):
                welcome()
                welcomed = True
            elif not welcomed and not slow and time.monotonic() - started > 90:
                slow = True
                say(f"the web server is still starting; its log: {self._logs() / 'web.log'}")
            stopped = processes.check()
            if stopped is not None:
                self._essential_stopped(stopped)
                stop(status=1)
            time.sleep(1 if welcomed else 0.2)

    @staticmethod
    def _logs() -> Path:
        return Path(settings.DATA_DIR) / "logs"

    def _essential_stopped(self, child) -> None:
        """Which process stopped, why (its errors above, or the end of its log), and where
        its log is."""
        lines = tail(child.log)
        self.stderr.write(self.style.ERROR(
            f"{child.name} stopped ({exit_status(child.proc.returncode)}); stopping the demo. "
            + (f"Its errors are above; its log: {where(child.log)}" if child.shown else
               f"The end of its log ({where(child.log)}):")))
        for line in [] if child.shown else lines:
            self.stderr.write(f"  {line}")
        if any("Address already in use" in line for line in lines):
            self.stderr.write("Another program listens on a port the demo needs (another demo "
                              "running?): stop it, or choose other ports with --port and "
                              "--prometheus-port (MODELGATE_PORT, "
                              "MODELGATE_DEMO_PROMETHEUS_PORT).")

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

    def _stop(self, processes: Supervisor, status: int = 0):
        """Stop every process (each stops its own children), the model servers too; exit."""
        self.stdout.write(f"\nStopping {', '.join(processes.children)}...")
        processes.stop()
        self._stop_model_servers()
        self.stdout.write("Stopped.")
        sys.exit(status)

    def _welcome(self, url: str, *, monitoring: bool, traffic: bool):
        rule = "=" * 78
        self.stdout.write(self.style.SUCCESS(f"\n{rule}\nModelgate is running at {url}"))
        self.stdout.write(f"API docs: {url}api/docs/   Admin: {url}admin/")
        self.stdout.write(f"Demo logins (password for all: {demo.DEMO_PASSWORD}):")
        for username, _role, description in demo.DEMO_USERS:
            self.stdout.write(f"  {username:<8} {description}")
        if monitoring and traffic:
            self.stdout.write("Monitoring: synthetic traffic flows to production; to see a drift "
                              "alert within about a minute run\n  .venv/bin/python manage.py "
                              "inject_drift   (and `inject_drift --stop` to end it)")
        self._drift_notice()
        if settings.EMAIL_BACKEND == FILE_MAIL:
            self.stdout.write(f"E-mails to the demo users: {where(settings.EMAIL_FILE_PATH)}/ "
                              "(a file per notification)")
        self.stdout.write(f"Logs: {where(self._logs())}/ (a file per process; errors show "
                          "here too)")
        self.stdout.write(self.style.SUCCESS(f"Press Ctrl-C to stop every process.\n{rule}"))

    def _drift_notice(self):
        """Drift an earlier ``inject_drift`` left on (the traffic stays shifted until
        ``inject_drift --stop``)."""
        drift = read_drift()
        if not drift:
            return
        features = ", ".join(drift.get("features", [])) or "no features"
        self.stdout.write(self.style.WARNING(
            f"Drift is on: {drift.get('model') or 'every model'}'s traffic has {features} "
            f"shifted by {drift.get('shift', 3.0):g} sd ({where(drift_file())}, left by "
            "`inject_drift`). End it with\n  .venv/bin/python manage.py inject_drift --stop"))


def wait_until_up(url: str, seconds: float = 90, give_up=lambda: False) -> bool:
    """Until the web server answers its health check, at most ``seconds`` (gunicorn imports
    the heavy libraries before it answers: portal/gunicorn_conf.py), or ``give_up()``;
    whether it answered."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not give_up():
        try:
            urllib.request.urlopen(url + "healthz", timeout=1)
            return True
        except OSError:
            time.sleep(0.3)
    return False
