from django.core.management.base import BaseCommand

from portal import demo


class Command(BaseCommand):
    help = "Create demo users, a project, datasets and trained model versions (idempotent)."

    def handle(self, *args, **options):
        created = demo.seed(log=self.stdout.write)
        if created:
            self.stdout.write(self.style.SUCCESS("demo data created"))
        else:
            self.stdout.write("demo data already present")
