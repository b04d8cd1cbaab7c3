"""``manage.py restore DIR``: put a backup made by ``manage.py backup`` back.

Into an empty database only (``--force`` replaces the objects of a non-empty one). Every
file is checked against the manifest before anything is written; the local artifact store
is filled and, when its root differs from the backed-up one, stored URIs are moved to the
new root. Finally every model version's artifact is re-hashed against the sha256 the
registry recorded at upload: a restore that lost or changed a file says so and fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, connections

from portal.web.management.commands.backup import engine, sha256_of


def _escapes(name: str) -> bool:
    """A manifest entry that is absolute or climbs out of the backup folder."""
    path = PurePosixPath(name.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts or name[1:2] == ":"


class Command(BaseCommand):
    help = "Restore a backup made by manage.py backup (database and local artifacts)."

    def add_arguments(self, parser):
        parser.add_argument("source", help="the backup folder")
        parser.add_argument("--force", action="store_true",
                            help="replace the objects of a database that is not empty")

    def handle(self, *args, source, force, **options):
        folder = Path(source)
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError) as e:
            raise CommandError(f"{folder} holds no readable manifest.json: {e}") from e
        kind = engine()
        if manifest["engine"] != kind:
            raise CommandError(f"the backup is of {manifest['engine']}, this database is {kind}")
        self._check_files(folder, manifest)
        if not force and "django_migrations" in connection.introspection.table_names():
            raise CommandError("the database is not empty; restore into an empty one, or "
                               "pass --force to replace what it holds")
        self._restore_database(folder, manifest, kind, force)
        moved = self._restore_artifacts(folder, manifest)
        checked, bad = (0, []) if settings.MODELGATE_ARTIFACT_BUCKET else self._verify()
        if bad:
            raise CommandError(f"{len(bad)} of {checked} artifacts do not match the registry: "
                               + "; ".join(bad[:5]))
        self.stdout.write(f"restored the {kind} database and {len(manifest['artifacts'].get('files', {}))} "
                          f"artifact files{'; moved URIs to the new root' if moved else ''}; "
                          f"{checked} version artifacts verified")

    def _check_files(self, folder: Path, manifest: dict) -> None:
        expected = {manifest["database"]["file"]: manifest["database"]["sha256"]}
        expected.update({f"artifacts/{k}": v
                         for k, v in manifest["artifacts"].get("files", {}).items()})
        for name, digest in expected.items():
            if _escapes(name):
                raise CommandError(f"the manifest names {name!r}, a path outside the backup; "
                                   "nothing was restored")
            path = folder / name
            if path.is_symlink():
                raise CommandError(f"{name} in the backup is a symbolic link; nothing was "
                                   "restored")
            if not path.is_file():
                raise CommandError(f"the backup lacks {name}")
            if sha256_of(path) != digest:
                raise CommandError(f"{name} in the backup is damaged (sha256 differs from the "
                                   "manifest); nothing was restored")

    def _restore_database(self, folder: Path, manifest: dict, kind: str, force: bool) -> None:
        dump = folder / manifest["database"]["file"]
        if kind == "postgresql":
            command = ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
                       "--single-transaction", "--dbname", settings.DATABASE_URL]
            if force:
                command[1:1] = ["--clean", "--if-exists"]
            connections.close_all()
            run = subprocess.run([*command, str(dump)], capture_output=True, text=True)
            if run.returncode != 0:
                raise CommandError(f"pg_restore failed: {run.stderr.strip()[-500:]}")
        else:
            connections.close_all()
            shutil.copyfile(dump, settings.DATABASES["default"]["NAME"])

    def _restore_artifacts(self, folder: Path, manifest: dict) -> bool:
        artifacts = manifest["artifacts"]
        if artifacts["kind"] != "local":
            self.stdout.write(f"artifacts live in s3://{artifacts['bucket']}: restore the bucket "
                              "from its versions or replica")
            return False
        if settings.MODELGATE_ARTIFACT_BUCKET:
            raise CommandError("the backup holds a local artifact store but this portal uses "
                               "S3; copy the files into the bucket first")
        root = Path(settings.MODELGATE_ARTIFACT_ROOT).resolve()
        # Only the files the manifest lists (and _check_files verified) are copied: anything
        # else lying in the backup's folder stays there.
        for name in artifacts.get("files", {}):
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / "artifacts" / name, target)
        old = artifacts["root"]
        if old == str(root):
            return False
        from django.db.models import Value
        from django.db.models.functions import Concat, Substr

        from portal.registry.models import Dataset, ModelVersion

        before, after = f"file://{old}/", f"file://{root}/"
        for model, field in ((ModelVersion, "artifact_uri"), (ModelVersion, "converted_uri"),
                             (Dataset, "uri")):
            model.objects.filter(**{f"{field}__startswith": before}).update(
                **{field: Concat(Value(after), Substr(field, len(before) + 1))})
        return True

    def _verify(self) -> tuple[int, list[str]]:
        from portal.registry.models import ModelVersion
        from portal.registry.storage import get_store

        store, checked, bad = get_store(), 0, []
        for version in ModelVersion.objects.exclude(artifact_uri="").iterator():
            files = [(version.artifact_uri, version.artifact_sha256)]
            if version.converted_uri:  # a pickle's skops conversion: what servers load
                files.append((version.converted_uri, version.converted_sha256))
            for uri, expected in files:
                checked += 1
                try:
                    with store.local_path(uri) as path:
                        digest = sha256_of(Path(path))
                except Exception as e:  # noqa: BLE001 - reported, the restore fails
                    bad.append(f"{version}: {type(e).__name__}")
                    continue
                if digest != expected:
                    bad.append(f"{version}: sha256 differs")
        return checked, bad
