"""``manage.py prometheus_config``: the main configuration of the Prometheus the portal
manages (``MODELGATE_PROMETHEUS_CONFIG_DIR``), checked by promtool, and the flags to run it.

The portal keeps the model servers' targets (file_sd) and the rules in that folder up to
date and asks Prometheus to reload (``--web.enable-lifecycle``); this writes what it does
not: ``prometheus.yml`` with the model-server job, the portal's own ``/metrics`` job (drift
gauges; with the bearer token the production profile requires), the rule files and the
Alertmanagers. The scrape interval is derived from the shortest window a rollout judges:
``rate()`` over a window needs about four samples, so a 30 s window wants at most 7 s.
"""

import math

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ops import prometheus
from ops.rollout.spec import MIN_ANALYSIS_WINDOW_SECONDS


def shortest_window() -> float:
    """The shortest window a rollout's analysis reads: the analysis's minimum, or a shorter
    minimum bake the operator allowed."""
    return min(MIN_ANALYSIS_WINDOW_SECONDS, settings.MODELGATE_ROLLOUT_MIN_BAKE_SECONDS)


def suited_interval() -> int:
    return max(1, min(15, math.floor(shortest_window() / 4)))


class Command(BaseCommand):
    help = ("Write prometheus.yml for the Prometheus the portal manages (model servers by "
            "file_sd, the portal's /metrics, rules, Alertmanagers), check it with promtool, "
            "and print the flags Prometheus must run with.")

    def add_arguments(self, parser):
        parser.add_argument("--dir", default=settings.MODELGATE_PROMETHEUS_CONFIG_DIR,
                            help="the folder (default: MODELGATE_PROMETHEUS_CONFIG_DIR)")
        parser.add_argument("--portal", required=True, metavar="HOST:PORT",
                            help="the portal's address as Prometheus reaches it")
        parser.add_argument("--scheme", choices=["http", "https"], default="http")
        parser.add_argument("--token-file", metavar="PATH",
                            help="file holding MODELGATE_METRICS_TOKEN, as Prometheus reads it "
                                 "(required when the portal sets a metrics token)")
        parser.add_argument("--alertmanager", action="append", default=[],
                            metavar="HOST:PORT", help="an Alertmanager (repeatable)")
        parser.add_argument("--scrape-interval", type=int, metavar="SECONDS",
                            help="default: suited to the shortest analysis window")
        parser.add_argument("--listen", default="127.0.0.1:9090", metavar="HOST:PORT",
                            help="Prometheus's address, for the flags printed")

    def handle(self, *args, **options):
        folder = options["dir"]
        if not folder:
            raise CommandError("give --dir, or set MODELGATE_PROMETHEUS_CONFIG_DIR (the portal "
                               "writes the targets and rules there)")
        if settings.MODELGATE_METRICS_TOKEN and not options["token_file"]:
            raise CommandError("the portal answers /metrics only with MODELGATE_METRICS_TOKEN: "
                               "give --token-file, the file Prometheus reads it from")
        interval = self._interval(options["scrape_interval"])
        try:
            prometheus.write_main_config(
                folder, scrape_interval=f"{interval}s", evaluation_interval=f"{interval}s",
                portal=options["portal"], portal_scheme=options["scheme"],
                portal_token_file=options["token_file"],
                alertmanagers=options["alertmanager"] or None)
        except prometheus.PrometheusConfigError as e:
            raise CommandError(str(e)) from e
        self.stdout.write(f"wrote {folder}/prometheus.yml (scrape every {interval} s; the "
                          f"shortest analysis window is {shortest_window():g} s)")
        self.stdout.write("run Prometheus with:\n  prometheus "
                          f"--config.file={folder}/prometheus.yml "
                          f"--web.listen-address={options['listen']} --web.enable-lifecycle")
        self.stdout.write("and give the portal MODELGATE_PROMETHEUS_URL=http://"
                          f"{options['listen']} MODELGATE_PROMETHEUS_CONFIG_DIR={folder}")

    def _interval(self, asked: int | None) -> int:
        suited = suited_interval()
        if asked is None:
            return suited
        if asked < 1 or asked > suited:
            raise CommandError(
                f"--scrape-interval {asked} s: a rollout judges windows as short as "
                f"{shortest_window():g} s, and rate() needs about four samples in one; use "
                f"1 to {suited} s (or raise MODELGATE_ROLLOUT_MIN_BAKE_SECONDS)")
        return asked
