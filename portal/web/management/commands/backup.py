"""``manage.py backup DIR``: the database and the local artifact store, with a manifest.

PostgreSQL is dumped with ``pg_dump --format=custom`` (consistent: one snapshot), SQLite
with its online backup API. Local artifacts are copied with their sha256; an S3 store is
backed up by the bucket's own versioning or replication (the manifest says so). A backup
folder is never overwritten. ``manage.py restore DIR`` reads it back (docs/operations.md).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def engine() -> str:
    name = settings.DATABASES["default"]["ENGINE"]
    if name.endswith("postgresql"):
        return "postgresql"
    if name.endswith("sqlite3"):
        return "sqlite"
    raise CommandError(f"backups support PostgreSQL and SQLite, not {name}")


class Command(BaseCommand):
    help = "Back up the database and the artifact store into a new folder."

    def add_arguments(self, parser):
        parser.add_argument("destination", help="a folder that does not exist yet")

    def handle(self, *args, destination, **options):
        out = Path(destination)
        if out.exists():
            raise CommandError(f"{out} exists: a backup never overwrites another")
        out.mkdir(parents=True)
        kind = engine()
        if kind == "postgresql":
            dump = out / "database.dump"
            run = subprocess.run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges",
                                  "--file", str(dump), "--dbname", settings.DATABASE_URL],
                                 capture_output=True, text=True)
            if run.returncode != 0:
                raise CommandError(f"pg_dump failed: {run.stderr.strip()[-500:]}")
            database = {"file": dump.name, "sha256": sha256_of(dump)}
        else:
            target = out / "database.sqlite3"
            source = sqlite3.connect(settings.DATABASES["default"]["NAME"])
            with sqlite3.connect(target) as copy:
                source.backup(copy)
            source.close()
            database = {"file": target.name, "sha256": sha256_of(target)}
        artifacts = self._artifacts(out)
        applied = MigrationRecorder(connection).applied_migrations()
        latest = {}
        for app, name in applied:
            latest[app] = max(latest.get(app, name), name)
        manifest = {"created_at": timezone.now().isoformat(), "engine": kind,
                    "database": database, "migrations": latest, "artifacts": artifacts}
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        count = len(artifacts.get("files", {}))
        self.stdout.write(f"backed up the {kind} database and {count} artifact files to {out}")

    def _artifacts(self, out: Path) -> dict:
        if settings.MODELGATE_ARTIFACT_BUCKET:
            return {"kind": "s3", "bucket": settings.MODELGATE_ARTIFACT_BUCKET,
                    "prefix": settings.MODELGATE_ARTIFACT_PREFIX,
                    "note": "back up the bucket with S3 versioning or replication"}
        root = Path(settings.MODELGATE_ARTIFACT_ROOT).resolve()
        files = {}
        if root.exists():
            shutil.copytree(root, out / "artifacts")
            for path in sorted((out / "artifacts").rglob("*")):
                if path.is_file():
                    files[path.relative_to(out / "artifacts").as_posix()] = sha256_of(path)
        return {"kind": "local", "root": str(root), "files": files}
