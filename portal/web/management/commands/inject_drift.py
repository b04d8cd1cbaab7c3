"""Make the demo's synthetic traffic drift (or stop it), to watch an alert appear."""

import json

from django.core.management.base import BaseCommand, CommandError

from portal.registry.models import RegisteredModel
from portal.web.management.commands.demo_traffic import drift_file


class Command(BaseCommand):
    help = ("Shift some input features of the demo traffic by a number of standard "
            "deviations; a drift alert appears in the portal within about a minute. "
            "--stop returns the traffic to normal (the alert resolves).")

    def add_arguments(self, parser):
        parser.add_argument("--model", default="tumor-classifier")
        parser.add_argument("--features", type=int, default=5,
                            help="how many of the model's features to shift")
        parser.add_argument("--shift", type=float, default=2.5, help="standard deviations")
        parser.add_argument("--stop", action="store_true")

    def handle(self, *args, model, features, shift, stop, **options):
        path = drift_file()
        if stop:
            if not path.exists():
                self.stdout.write("No drift is injected: the demo traffic is normal.")
                return
            path.unlink(missing_ok=True)
            self.stdout.write("Demo traffic is back to normal; the drift alert resolves once "
                              "the drift window has passed (about a minute).")
            return
        found = RegisteredModel.objects.filter(name=model).first()
        if found is None:
            raise CommandError(f"no model named {model!r}")
        version = found.versions.filter(status="ready").order_by("-number").first()
        names = [f["name"] for f in (version.input_schema if version else [])][:features]
        if not names:
            raise CommandError(f"{model} has no ready version with an input schema")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"model": model, "features": names, "shift": shift}))
        self.stdout.write(f"Shifting {', '.join(names)} of {model} by {shift:g} sd. Open "
                          "/alerts/ (or the endpoint's monitoring page): a drift alert appears "
                          "within about a minute. The shift stays on, across restarts of the "
                          "demo, until: manage.py inject_drift --stop")
