from django.core.management.base import BaseCommand, CommandError

from portal.audit.services import verify_chain


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain; exits non-zero if an event was edited or removed."

    def handle(self, *args, **options):
        count, problems = verify_chain()
        for problem in problems:
            self.stderr.write(problem)
        if problems:
            raise CommandError(f"audit chain broken: {len(problems)} problem(s) in {count} events")
        self.stdout.write(self.style.SUCCESS(f"audit chain intact: {count} events verified"))
