"""Projects (who may allow unsafe artifacts) and the models registered in them."""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction

from portal.accounts.choices import Role
from portal.accounts.models import Membership
from portal.accounts.services import require_role
from portal.audit import services as audit
from portal.errors import Conflict, NotAllowed, ValidationFailed
from portal.registry.models import Project, RegisteredModel
from portal.registry.services.archive import lock_open, refuse_archived
from portal.registry.services.base import _full_clean


def unsafe_allowed(project: Project) -> bool:
    """Whether pickle/joblib uploads are accepted for ``project``: the operator enables them
    for the instance (``MODELGATE_ALLOW_UNSAFE_ARTIFACTS``) and staff for the project."""
    return settings.MODELGATE_ALLOW_UNSAFE_ARTIFACTS and project.allow_unsafe_artifacts


def _check_unsafe_choice(user, allow: bool) -> None:
    """Allowing unsafe artifacts is an operator's and staff's decision, never an owner's:
    a pickle runs code on the machines that run the portal, which no project owns."""
    if not allow:
        return
    if not settings.MODELGATE_ALLOW_UNSAFE_ARTIFACTS:
        raise ValidationFailed(
            "pickle/joblib artifacts are disabled on this instance; its operator may enable "
            "them (MODELGATE_ALLOW_UNSAFE_ARTIFACTS)", code="unsafe_disabled",
            field="allow_unsafe_artifacts")
    if not user.is_staff:
        raise NotAllowed("only staff may allow pickle/joblib artifacts for a project",
                         code="staff_required")


def create_project(user, *, name: str, slug: str, description: str = "",
                   allow_unsafe_artifacts: bool = False) -> Project:
    """Any signed-in user may create a project and becomes its owner."""
    _check_unsafe_choice(user, allow_unsafe_artifacts)
    project = Project(name=name, slug=slug, description=description,
                      allow_unsafe_artifacts=allow_unsafe_artifacts, created_by=user)
    _full_clean(project, exclude=["created_by"])
    with transaction.atomic():
        if Project.objects.filter(slug=slug).exists():
            raise Conflict(f"a project with slug {slug!r} already exists", code="duplicate_project",
                           field="slug")
        project.save()
        Membership.objects.create(project=project, user=user, role=Role.OWNER)
        audit.record(user, "project.create", project,
                     changes={"name": name, "slug": slug,
                              "allow_unsafe_artifacts": allow_unsafe_artifacts})
    return project


PROJECT_EDITABLE = ("name", "description", "allow_unsafe_artifacts")


def update_project(user, project: Project, **fields) -> Project:
    require_role(user, project, Role.OWNER, "change project settings")
    unknown = set(fields) - set(PROJECT_EDITABLE)
    if unknown:
        raise ValidationFailed(f"cannot change {', '.join(sorted(unknown))}")
    if fields.get("allow_unsafe_artifacts") and not project.allow_unsafe_artifacts:
        _check_unsafe_choice(user, True)
    before = {k: getattr(project, k) for k in fields}
    for key, value in fields.items():
        setattr(project, key, value)
    _full_clean(project, exclude=["created_by", "slug"])
    with transaction.atomic():
        project.save(update_fields=list(fields))
        audit.record(user, "project.update", project, changes=audit.diff(before, fields))
    return project


# Models ----------------------------------------------------------------------------------

# A multi-model endpoint's name on the platform is mme-<name>-env-<id> (decision 68); a plan
# endpoint is named after its model, so a model named so would share its series, windows and
# rules.
RESERVED_MODEL_PREFIX = "mme-"


def create_model(user, project: Project, *, name: str, task: str,
                 description: str = "") -> RegisteredModel:
    require_role(user, project, Role.CONTRIBUTOR, "register models")
    refuse_archived(project)
    if str(name).startswith(RESERVED_MODEL_PREFIX):
        raise ValidationFailed(
            f"model names cannot start with {RESERVED_MODEL_PREFIX!r}: it is reserved for "
            "multi-model endpoints, whose platform names (mme-<name>-env-<id>) a model's "
            "endpoint would collide with", field="name")
    model = RegisteredModel(project=project, name=name, task=task, description=description,
                            created_by=user)
    _full_clean(model, exclude=["created_by"])
    try:
        with transaction.atomic():
            lock_open(project)  # not archived meanwhile (archive's module doc)
            model.save()
            audit.record(user, "model.create", model, changes={"name": name, "task": task})
    except IntegrityError as e:
        raise Conflict(f"project {project.slug} already has a model named {name!r}",
                       code="duplicate_model", field="name") from e
    return model


def update_model(user, model: RegisteredModel, *, description: str) -> RegisteredModel:
    require_role(user, model.project, Role.CONTRIBUTOR, "edit models")
    with transaction.atomic():
        before = model.description
        model.description = description
        model.save(update_fields=["description"])
        audit.record(user, "model.update", model, changes={"description": audit.change(before, description)})
    return model
