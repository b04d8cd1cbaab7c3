"""Lineage: the graph of versions derived from one another and the datasets they used."""

from __future__ import annotations

from django.db import connection

from portal.registry.models import Dataset, ModelVersion

MAX_LINEAGE_NODES = 200
# A version's ancestors (nearest first) then its descendants (level by level), at most
# MAX_LINEAGE_NODES, in one query whatever the depth: walking the graph one query per
# generation cost a page a query for each ancestor and each level of descendants. Both
# PostgreSQL and SQLite run recursive common table expressions; the depth bound also ends
# a walk that meets a cycle.
_LINEAGE_SQL = """
WITH RECURSIVE up(id, parent_id, depth) AS (
    SELECT id, parent_id, 0 FROM {table} WHERE id = %s
    UNION
    SELECT v.id, v.parent_id, up.depth + 1 FROM {table} v JOIN up ON v.id = up.parent_id
    WHERE up.depth < %s
), down(id, depth) AS (
    SELECT id, 0 FROM {table} WHERE id = %s
    UNION
    SELECT v.id, down.depth + 1 FROM {table} v JOIN down ON v.parent_id = down.id
    WHERE down.depth < %s
)
SELECT id FROM (
    SELECT id, 0 AS side, depth FROM up
    UNION ALL
    SELECT id, 1 AS side, depth FROM down WHERE depth > 0
) AS lineage ORDER BY side, depth, id LIMIT %s
"""


NODE_COLUMNS = ("number", "label", "status", "created_at", "parent", "model__name",
                "model__project__slug", "dataset__name", "dataset__sha256", "dataset__rows")


def lineage(version: ModelVersion) -> dict:
    """The graph around a version: its ancestors, descendants and their datasets.

    Nodes are ``{"id", "kind", "label", ...}``; edges ``{"source", "target", "kind"}`` with
    kinds ``derived_from`` (parent → child) and ``trained_on`` (dataset → version).
    """
    with connection.cursor() as cursor:
        cursor.execute(_LINEAGE_SQL.format(table=ModelVersion._meta.db_table),
                       [version.pk, MAX_LINEAGE_NODES, version.pk, MAX_LINEAGE_NODES,
                        MAX_LINEAGE_NODES])
        ids = [row[0] for row in cursor.fetchall()]
    # The version itself is at hand (a version without parent or child needs nothing more);
    # of the others, only what a node shows.
    versions: dict[int, ModelVersion] = {
        v.pk: v for v in ModelVersion.objects.select_related("dataset", "model__project")
        .only(*NODE_COLUMNS).filter(pk__in=[pk for pk in ids if pk != version.pk])
    } if set(ids) - {version.pk} else {}
    versions[version.pk] = version

    model = version.model
    nodes, edges = [], []
    datasets: dict[int, Dataset] = {}
    for v in sorted(versions.values(), key=lambda v: v.number):
        nodes.append({
            "id": f"version:{v.pk}", "kind": "version", "version_id": v.pk,
            "label": f"{model.name} {v.display_name}", "number": v.number, "status": v.status,
            "created_at": v.created_at.isoformat(), "focus": v.pk == version.pk,
            "url": v.get_absolute_url() if v.model_id == model.pk else None,
        })
        if v.parent_id and v.parent_id in versions:
            edges.append({"source": f"version:{v.parent_id}", "target": f"version:{v.pk}",
                          "kind": "derived_from"})
        if v.dataset_id:
            datasets[v.dataset_id] = v.dataset
            edges.append({"source": f"dataset:{v.dataset_id}", "target": f"version:{v.pk}",
                          "kind": "trained_on"})
    for d in datasets.values():
        nodes.append({"id": f"dataset:{d.pk}", "kind": "dataset", "dataset_id": d.pk,
                      "label": d.name, "sha256": d.sha256, "rows": d.rows,
                      "url": d.get_absolute_url()})
    return {"version": version.pk, "nodes": nodes, "edges": edges}
