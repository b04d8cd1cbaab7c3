"""Backup and restore, run as an operator would: ``manage.py backup`` of a portal with
versions and datasets, ``manage.py restore`` into a new empty database and another artifact
root, and the restored portal serves the same registry with every artifact verified."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.conf import settings

from portal.registry import services as registry
from portal.registry.models import ModelVersion
from tests.portal_fixtures import metadata, random_classifier_bytes

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


def _server_url() -> str | None:
    db = settings.DATABASES["default"]
    if not db["ENGINE"].endswith("postgresql"):
        return None
    return f"postgres://{db.get('USER') or 'postgres'}@{db.get('HOST') or '127.0.0.1'}:" \
           f"{db.get('PORT') or 5432}"


@pytest.fixture
def restore_database():
    server = _server_url()
    if server is None:
        pytest.skip("backup and restore are tested on PostgreSQL (the test database is SQLite)")
    name = f"modelgate_restore_{os.getpid()}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{server}/{name}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def manage(*args, database_url: str, artifact_root: Path, data_dir: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELGATE_")}
    env.update(DATABASE_URL=database_url, MODELGATE_ARTIFACT_ROOT=str(artifact_root),
               MODELGATE_DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="portal.settings")
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def portal_with_data(users, project, clf, cancer_frame):
    dataset = registry.upload_dataset(users["contributor"], project, name="train",
                                      file=io.BytesIO(cancer_frame.to_csv().encode()),
                                      filename="train.csv", target="target")
    versions = [registry.validate_version(registry.register_version(
        users["contributor"], clf, io.BytesIO(random_classifier_bytes(seed)),
        metadata(dataset=dataset.pk)).pk) for seed in (1, 2, 3)]
    return {"dataset": dataset, "versions": versions}


def test_backup_then_restore_elsewhere_gives_back_the_same_registry(
        portal_with_data, restore_database, tmp_path):
    source = f"{_server_url()}/{settings.DATABASES['default']['NAME']}"
    backup = tmp_path / "backup-1"
    made = manage("backup", str(backup), database_url=source,
                  artifact_root=Path(settings.MODELGATE_ARTIFACT_ROOT), data_dir=tmp_path / "a")
    assert made.returncode == 0, made.stderr
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["engine"] == "postgresql" and len(manifest["artifacts"]["files"]) == 4
    assert manifest["migrations"]["experiments"].startswith("0001")

    again = manage("backup", str(backup), database_url=source,
                   artifact_root=Path(settings.MODELGATE_ARTIFACT_ROOT), data_dir=tmp_path / "a")
    assert again.returncode != 0 and "never overwrites" in again.stderr

    new_root = tmp_path / "restored-artifacts"
    restored = manage("restore", str(backup), database_url=restore_database,
                      artifact_root=new_root, data_dir=tmp_path / "b")
    assert restored.returncode == 0, restored.stderr
    assert "3 version artifacts verified" in restored.stdout
    assert "moved URIs to the new root" in restored.stdout

    with psycopg.connect(restore_database) as conn:
        rows = conn.execute("SELECT number, artifact_sha256, artifact_uri, status FROM "
                            "registry_modelversion ORDER BY number").fetchall()
    expected = [(v.number, v.artifact_sha256, v.status) for v in
                ModelVersion.objects.order_by("number")]
    assert [(n, sha, status) for n, sha, _, status in rows] == expected
    assert all(uri.startswith(f"file://{new_root.resolve()}/") for _, _, uri, _ in rows)

    # Into a database that is not empty: refused unless asked to replace it.
    twice = manage("restore", str(backup), database_url=restore_database,
                   artifact_root=new_root, data_dir=tmp_path / "b")
    assert twice.returncode != 0 and "not empty" in twice.stderr
    forced = manage("restore", str(backup), "--force", database_url=restore_database,
                    artifact_root=new_root, data_dir=tmp_path / "b")
    assert forced.returncode == 0, forced.stderr


def test_a_damaged_backup_is_refused_before_anything_is_written(
        portal_with_data, restore_database, tmp_path):
    source = f"{_server_url()}/{settings.DATABASES['default']['NAME']}"
    backup = tmp_path / "backup-2"
    assert manage("backup", str(backup), database_url=source,
                  artifact_root=Path(settings.MODELGATE_ARTIFACT_ROOT),
                  data_dir=tmp_path / "a").returncode == 0
    victim = next(p for p in (backup / "artifacts").rglob("*") if p.is_file())
    victim.write_bytes(victim.read_bytes() + b"tampered")
    restored = manage("restore", str(backup), database_url=restore_database,
                      artifact_root=tmp_path / "r", data_dir=tmp_path / "b")
    assert restored.returncode != 0 and "damaged" in restored.stderr
    with psycopg.connect(restore_database) as conn:
        tables = conn.execute("SELECT count(*) FROM information_schema.tables WHERE "
                              "table_schema = 'public'").fetchone()[0]
    assert tables == 0


def test_a_hostile_backup_writes_nothing_outside_the_artifact_root(
        portal_with_data, restore_database, tmp_path):
    """A manifest naming a path outside the backup is refused; a file the manifest does not
    list is not copied, nor is anything a symbolic link points at."""
    import json

    source = f"{_server_url()}/{settings.DATABASES['default']['NAME']}"
    backup = tmp_path / "backup-3"
    assert manage("backup", str(backup), database_url=source,
                  artifact_root=Path(settings.MODELGATE_ARTIFACT_ROOT),
                  data_dir=tmp_path / "a").returncode == 0
    (backup / "artifacts" / "stray.txt").write_text("not in the manifest")
    root = tmp_path / "r"
    restored = manage("restore", str(backup), database_url=restore_database,
                      artifact_root=root, data_dir=tmp_path / "b")
    assert restored.returncode == 0, restored.stderr
    assert not (root / "stray.txt").exists()
    assert any(p.is_file() for p in root.rglob("*"))

    manifest = json.loads((backup / "manifest.json").read_text())
    name, digest = next(iter(manifest["artifacts"]["files"].items()))
    manifest["artifacts"]["files"] = {"../../escaped.skops": digest}
    (backup / "manifest.json").write_text(json.dumps(manifest))
    refused = manage("restore", str(backup), "--force", database_url=restore_database,
                     artifact_root=tmp_path / "r2", data_dir=tmp_path / "c")
    assert refused.returncode != 0 and "outside the backup" in refused.stderr
    assert not (tmp_path / "escaped.skops").exists()

    manifest["artifacts"]["files"] = {name: digest}
    (backup / "manifest.json").write_text(json.dumps(manifest))
    real = backup / "artifacts" / name
    real.rename(tmp_path / "moved")
    real.symlink_to(tmp_path / "moved")
    linked = manage("restore", str(backup), "--force", database_url=restore_database,
                    artifact_root=tmp_path / "r3", data_dir=tmp_path / "d")
    assert linked.returncode != 0 and "symbolic link" in linked.stderr
