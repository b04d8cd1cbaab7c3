from django.core.management.base import BaseCommand, CommandError

from portal.audit.services import verify


class Command(BaseCommand):
    help = ("Verify the audit trail: every event's link and hash or MAC, and every checkpoint "
            "of the chain's head; exits 1 if an event was edited, inserted or removed.")

    def handle(self, *args, **options):
        result = verify()
        legacy = f", {result.legacy} of them from before keys (sha256)" if result.legacy else ""
        checked = (f"Checked {result.events} events{legacy} and {result.checkpoints} "
                   "checkpoints.")
        if result.problems:
            self.stderr.write(checked)
            for problem in result.problems:
                self.stderr.write(f"Problem: {problem}.")
            raise CommandError(f"audit chain broken: {len(result.problems)} problem(s) in "
                               f"{result.events} events and {result.checkpoints} checkpoints")
        self.stdout.write(self.style.SUCCESS(
            f"audit chain intact: {result.events} events verified{legacy}, "
            f"{result.checkpoints} checkpoints checked."))
