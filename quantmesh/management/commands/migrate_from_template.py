"""`migrate`, but a database that does not exist yet starts as a copy of the migrated template
(quantmesh/dbtemplate.py) instead of applying two minutes of migrations one by one."""

from __future__ import annotations

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connections

from quantmesh.dbtemplate import database_from_template


class Command(BaseCommand):
    help = "Create the database from the migrated template when it is missing (or with --replace), else migrate it."
    requires_system_checks = []  # the database may not exist yet: nothing may touch it before the copy

    def add_arguments(self, parser):
        parser.add_argument("--replace", action="store_true", help="Drop an existing database and copy it afresh.")

    def handle(self, *args, replace: bool, **options):
        connection = connections["default"]
        connection.close()
        if database_from_template(connection.settings_dict, connection.settings_dict["NAME"], replace=replace):
            if options["verbosity"]:
                self.stdout.write("Database copied from the migrated template.")
            return  # the template holds exactly these migrations: nothing to apply
        call_command("migrate", interactive=False, verbosity=options["verbosity"])
