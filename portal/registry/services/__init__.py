"""Registry operations: projects, models, versions, datasets, aliases, lineage.

Views, serializers, admin actions and tasks call these functions; none of them carries
business rules of its own. One module a concern; every name is importable from here
(``from portal.registry import services; services.register_version(...)``), which is how
callers, tasks (``on_time_limit="portal.registry.services:..."``) and tests reach them.

- ``projects``: projects (who may allow unsafe artifacts) and their models
- ``versions``: registering a version (its metadata: ``portal.registry.metadata``),
  validating it in a worker, archiving it
- ``datasets``: uploading and profiling datasets, reading them back within the limits
- ``evaluations``: every ready version measured on the project's evaluation datasets, and
  the evidence gates judge (measured over declared)
- ``explanations``: SHAP explanations of versions and of rows users send
- ``aliases`` (moved by people, and by a release that succeeds), ``lineage``; ``requeue``: work no worker finished, queued again
- ``archive``: archiving and restoring projects, models, datasets (and the releases app's
  environments), and refusing what would go into something archived

Time limits: a worker task stopped at its limit leaves its object failed with the reason
(never pending, which the periodic requeue would send again and again):
``validation_timed_out``, ``profile_timed_out``, ``explanation_timed_out``.
"""

from portal.registry.metadata import COMMIT, parse_version_metadata
from portal.registry.services.aliases import (
    PROTECTED_ALIASES,
    delete_alias,
    move_alias_for_release,
    require_alias_role,
    set_alias,
)
from portal.registry.services.archive import (
    archive_dataset,
    archive_model,
    archive_object,
    archive_project,
    lock_open,
    refuse_archive_when,
    refuse_archived,
    restore_dataset,
    restore_model,
    restore_object,
    restore_project,
)
from portal.registry.services.datasets import (
    dataset_limits,
    profile_dataset,
    profile_timed_out,
    read_linked_dataset,
    reference_inputs,
    sample_rows,
    upload_dataset,
)
from portal.registry.services.evaluations import (
    evaluate,
    evaluation_timed_out,
    queue_evaluations,
)
from portal.registry.services.explanations import (
    MAX_EXPLAIN_ROWS,
    explain_instances,
    explain_version,
    explanation_timed_out,
    load_version_model,
    request_instance_explanation,
)
from portal.registry.services.lineage import MAX_LINEAGE_NODES, lineage
from portal.registry.services.projects import (
    PROJECT_EDITABLE,
    create_model,
    create_project,
    unsafe_allowed,
    update_model,
    update_project,
)
from portal.registry.services.requeue import requeue_stuck_work
from portal.registry.services.schemas import schema_words
from portal.registry.services.versions import (
    archive_version,
    convert_unsafe_artifact,
    register_version,
    restore_version,
    sandbox_limits,
    validate_version,
    validation_timed_out,
    verified_artifact,
)

__all__ = [
    "COMMIT", "MAX_EXPLAIN_ROWS", "MAX_LINEAGE_NODES", "PROJECT_EDITABLE", "PROTECTED_ALIASES",
    "archive_dataset", "archive_model", "archive_object", "archive_project",
    "lock_open", "refuse_archive_when", "refuse_archived", "restore_dataset",
    "restore_model", "restore_object", "restore_project",
    "archive_version", "convert_unsafe_artifact", "create_model", "create_project",
    "dataset_limits", "delete_alias", "evaluate", "evaluation_timed_out", "explain_instances", "explain_version",
    "explanation_timed_out", "lineage", "load_version_model", "move_alias_for_release",
    "parse_version_metadata", "profile_dataset", "profile_timed_out", "queue_evaluations",
    "read_linked_dataset", "reference_inputs", "register_version", "request_instance_explanation", "require_alias_role", "restore_version",
    "schema_words",
    "requeue_stuck_work", "sample_rows", "sandbox_limits", "set_alias", "unsafe_allowed",
    "update_model", "update_project", "upload_dataset", "validate_version",
    "validation_timed_out", "verified_artifact",
]
