"""Print (or write) the Prometheus rules of what runs now, for a Prometheus managed elsewhere."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ops.prometheus import PrometheusConfigError, check_rules_text, promtool
from portal.monitoring.prometheus_sync import export_rules
from portal.releases.models import Environment


class Command(BaseCommand):
    help = ("Export the recording and alerting rules of every served endpoint (error rate, "
            "latency, no traffic, server down, drift) as a Prometheus rule file. The series "
            "must carry an 'environment' label (the environment's name) and a 'project' label "
            "(its project's slug) from your scrape configuration, and your Prometheus must scrape the portal's /metrics for the "
            "drift gauges.")

    def add_arguments(self, parser):
        parser.add_argument("--output", "-o", help="write to this file instead of stdout")
        parser.add_argument("--environment", action="append", default=[],
                            help="only this environment name (repeatable)")
        parser.add_argument("--project", help="only environments of this project (slug)")
        parser.add_argument("--no-check", action="store_true",
                            help="do not run promtool check rules on the result")

    def handle(self, *args, **options):
        environments = Environment.objects.all()
        if options["project"]:
            environments = environments.filter(project__slug=options["project"])
        if options["environment"]:
            environments = environments.filter(name__in=options["environment"])
        if (options["project"] or options["environment"]) and not environments.exists():
            raise CommandError("no environment matches these options")
        text = export_rules(environments)
        if not options["no_check"]:
            if promtool() is None:
                raise CommandError("promtool is not installed (apt-get install prometheus); "
                                   "pass --no-check to export unchecked rules")
            try:
                check_rules_text(text)
            except PrometheusConfigError as e:
                raise CommandError(str(e)) from e
        if options["output"]:
            Path(options["output"]).write_text(text)
            self.stderr.write(f"wrote {options['output']}")
        else:
            self.stdout.write(text, ending="")
