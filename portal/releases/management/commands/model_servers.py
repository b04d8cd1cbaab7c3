"""``manage.py model_servers list|stop|start``: the local backend's model-server processes
(each multi-model endpoint's too: its members and the version each is served at).

They run in sessions of their own and outlive the portal that started them (the demo stops
its own on Ctrl-C). ``stop`` keeps each endpoint's plan; ``start`` (and ``make demo`` when it starts) starts a
stopped server again on what its latest rollout left it serving.
"""

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = ("List, stop or start again the local backend's model servers "
            "(ENVIRONMENT/ENDPOINT names; all when none is given).")

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["list", "stop", "start"])
        parser.add_argument("names", nargs="*", metavar="ENVIRONMENT/ENDPOINT")

    def handle(self, *args, action, names, **options):
        from portal.releases import local_servers

        if action == "list":
            servers = local_servers.local_servers()
            if not servers:
                self.stdout.write("No local endpoint has been released to.")
            for s in servers:
                state = f"running (pid {s.pid})" if s.pid else "stopped"
                served = "catalog" if s.multimodel else "plan"
                self.stdout.write(f"{s.name}\t{state}\t{s.url or '-'}\t{served} {s.generation}\t"
                                  f"{', '.join(s.variants) or '-'}"
                                  + (f"\t{s.detail}" if s.detail else ""))
            return
        act = {"stop": local_servers.stop_local_servers,
               "start": local_servers.start_local_servers}[action]
        try:
            done = act(names or None)
        except ValueError as e:
            raise CommandError(str(e)) from e
        none = "none was running" if action == "stop" else "none was stopped"
        self.stdout.write(f"{'stopped' if action == 'stop' else 'started'}: "
                          f"{', '.join(done) or none}")
