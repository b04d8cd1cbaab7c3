"""``manage.py createuser NAME [--email E] [--project P --role R] [--password-stdin]``.

An operator's way to create a person (``portal.accounts.users.create_user``, audited with
no actor): with a password read from standard input, or without one and a one-time
set-password link printed once. ``--project`` (a slug) with ``--role`` makes them a member
too. Never a password on the command line, where the shell's history would keep it."""

import sys

from django.core.management.base import BaseCommand, CommandError

from portal.accounts import users
from portal.accounts.choices import Role
from portal.accounts.models import project_model
from portal.errors import DomainError


class Command(BaseCommand):
    help = "Create a person, optionally a member of a project with a role."
    stealth_options = ("stdin",)  # tests hand the password in

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument("--project", help="the slug of a project to make them a member of")
        parser.add_argument("--role", choices=Role.values,
                            help="their role in --project (default viewer)")
        parser.add_argument("--password-stdin", action="store_true",
                            help="read the password from standard input (one line); "
                                 "otherwise print a one-time link to set it")

    def handle(self, *args, username, email, project, role, password_stdin, **options):
        found = None
        if project:
            found = project_model().objects.filter(slug=project).first()
            if found is None:
                raise CommandError(f"no project with slug {project!r}")
        elif role:
            raise CommandError("--role is a role in a project: give --project too")
        password = None
        if password_stdin:
            password = options.get("stdin", sys.stdin).readline().rstrip("\n")
            if not password:
                raise CommandError("no password on standard input")
        try:
            user, link = users.create_user(None, username=username, email=email,
                                           password=password, project=found, role=role)
        except DomainError as e:
            raise CommandError(e.detail) from e
        member = f", {role or Role.VIEWER} of {found.slug}" if found else ""
        self.stdout.write(f"created {user.username}{member}")
        if link:
            self.stdout.write(f"one-time link to set the password (append it to the portal's "
                              f"address; valid 3 days): {link}")
