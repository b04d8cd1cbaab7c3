"""The metadata document of a new model version, declared once.

``VersionMetadataSerializer`` lists the keys a version's metadata may carry, each with its
check and its error message; ``parse_version_metadata`` runs it and answers what a version
stores. Every registration goes through it: the API (``VersionCreateSerializer``'s
``metadata`` JSON), the upload form (``VersionForm.metadata()``), the demo and the tests all
hand the document to ``services.register_version``, which parses it before anything is
stored.

A key left out takes its default. ``code``, ``label`` and ``description`` take it for any
false value as well (``null``, ``""``, ``{}``); ``dataset`` and ``parent`` for ``null`` and
``""``; for the others ``null`` is refused like any other value of the wrong type. Keys are
checked in the order declared and the first refusal is the answer (``ValidationFailed``
naming the key, with the key's code): later keys may ask the database (``dataset``,
``parent``), so they are not looked at once one has failed.
"""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.fields import empty

from ops.schema import SchemaError, parse_input_schema, schema_document
from portal.errors import ValidationFailed
from portal.registry.models import (
    SEMVER_RULE,
    Dataset,
    ModelVersion,
    RegisteredModel,
    semver_validator,
)

COMMIT = re.compile(r"^[0-9a-f]{7,64}$")  # abbreviated (7+) to full SHA-1 (40) or SHA-256 (64)
# The refusals with a code of their own; any other is a plain ``validation_error``.
DOMAIN_CODES = {"unknown_dataset", "unknown_parent"}


class MetadataKey(serializers.Field):
    """One key of the document: left out, its default; present (``null`` too), checked by
    ``to_internal_value``. ``blank``: the values that count as left out."""

    blank: tuple = ()

    def validate_empty_values(self, data):
        if data is empty:
            if self.required:
                self.fail("required")
            return True, self.get_default()
        if data in self.blank:
            return True, self.get_default()
        return False, data

    def to_representation(self, value):
        return value


class FalsyIsDefault(MetadataKey):
    """A key whose every false value (``null``, ``""``, ``{}``, ``0``...) means left out."""

    def validate_empty_values(self, data):
        if data is not empty and not data:
            return True, self.get_default()
        return super().validate_empty_values(data)


class InputSchemaKey(MetadataKey):
    default_error_messages = {
        "required": "metadata.input_schema is required: the list of input features"}

    def to_internal_value(self, data):
        try:
            return schema_document(parse_input_schema(data))
        except SchemaError as e:
            raise serializers.ValidationError(str(e)) from e


class ObjectKey(MetadataKey):
    """A JSON object, stored as sent."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            self.fail("invalid")
        return data


class NumberMapKey(ObjectKey):
    """Names to finite-or-infinite numbers (not NaN, not booleans), stored as sent."""

    def to_internal_value(self, data):
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
            and v == v for k, v in data.items()
        ):
            self.fail("invalid")
        return data


class ClassLabelsKey(FalsyIsDefault):
    """``{"0": "malignant", "1": "benign"}``: each class value the model predicts (as text)
    and the name people know it by; kept in ``output_schema["classes"]``."""

    default_error_messages = {
        "invalid": 'classes must map each class value to its name, e.g. '
                   '{{"0": "malignant", "1": "benign"}}'}

    def to_internal_value(self, data):
        if not isinstance(data, dict) or not all(
                isinstance(v, str) and 0 < len(v.strip()) <= 120 for v in data.values()):
            self.fail("invalid")
        return {str(k): v.strip() for k, v in data.items()}


class CodeKey(FalsyIsDefault):
    """``{"repository": ..., "commit": ...}``; the commit a git commit id, 7 to 64
    hexadecimal characters."""

    default_error_messages = {
        "invalid": 'code must be {{"repository": ..., "commit": ...}}',
        "commit": "code.commit must be a git commit id: 7 to 64 hexadecimal characters "
                  "(0-9, a-f; an abbreviated or full SHA-1 or SHA-256 id); got {commit}",
    }

    def to_internal_value(self, data):
        if not isinstance(data, dict) or set(data) - {"repository", "commit"}:
            self.fail("invalid")
        commit = str(data.get("commit") or "").lower()
        if commit and not COMMIT.match(commit):
            self.fail("commit", commit=repr(str(data.get("commit"))[:80]))
        return {"repository": str(data.get("repository") or "")[:300], "commit": commit}


class TagsKey(MetadataKey):
    """Short strings; stored once each, sorted."""

    default_error_messages = {"invalid": "tags must be a list of short strings"}

    def to_internal_value(self, data):
        if not isinstance(data, list) or not all(isinstance(t, str) and 0 < len(t) <= 64
                                                 for t in data):
            self.fail("invalid")
        return sorted(set(data))


class SemverKey(FalsyIsDefault):
    default_error_messages = {
        "invalid": "label must be " + SEMVER_RULE.replace("{", "{{").replace("}", "}}")
                   + "; got {label}"}

    def to_internal_value(self, data):
        try:
            semver_validator(data)
        except DjangoValidationError as e:
            raise serializers.ValidationError(
                self.error_messages["invalid"].format(label=repr(data)), code="invalid") from e
        return data


class TextKey(FalsyIsDefault):
    default_error_messages = {"invalid": "description must be a string"}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return data


class DatasetKey(MetadataKey):
    """A dataset of the model's project: its id, its name (the newest of that name) or the
    sha256 of its file."""

    blank = (None, "")
    default_error_messages = {
        "invalid": "dataset must be a dataset id, name or sha256",
        "unknown_dataset": "dataset {ref} is not in project {project}",
    }

    def to_internal_value(self, ref):
        project = self.context["model"].project
        queryset = Dataset.objects.filter(project=project)
        if isinstance(ref, int) and not isinstance(ref, bool):
            dataset = queryset.filter(pk=ref).first()
        elif isinstance(ref, str):
            dataset = queryset.filter(name=ref).order_by("-created_at").first() or (
                queryset.filter(sha256=ref.lower()).first() if len(ref) == 64 else None)
        else:
            self.fail("invalid")
        if dataset is None:
            self.fail("unknown_dataset", ref=repr(ref), project=project.slug)
        return dataset


class ParentKey(MetadataKey):
    """A version of the same model, by number (``2``, ``"2"`` or ``"v2"``)."""

    blank = (None, "")
    default_error_messages = {
        "invalid": "parent must be a version number of this model, e.g. 2",
        "unknown_parent": "model {model} has no version {number}",
    }

    def to_internal_value(self, ref):
        model = self.context["model"]
        number = ref
        if isinstance(ref, str) and re.fullmatch(r"v?\d+", ref):
            number = int(ref.lstrip("v"))
        if not isinstance(number, int) or isinstance(number, bool):
            self.fail("invalid")
        parent = ModelVersion.objects.filter(model=model, number=number).first()
        if parent is None:
            self.fail("unknown_parent", model=model.name, number=number)
        return parent


class TriggerKey(MetadataKey):
    """A retraining trigger's id (``modelgate register --triggered-by``): the retraining app
    checks it is the model's and links the version (``registry.signals``)."""

    blank = (None, "")
    default_error_messages = {"invalid": "triggered_by must be a retraining trigger's id, "
                                         "e.g. 12"}

    def to_internal_value(self, ref):
        if isinstance(ref, str) and ref.isdigit():
            ref = int(ref)
        if not isinstance(ref, int) or isinstance(ref, bool) or ref < 1:
            self.fail("invalid")
        return ref


class VersionMetadataSerializer(serializers.Serializer):
    """The keys of a version's metadata, in the order they are checked. Context: ``model``,
    the registered model the version is for."""

    input_schema = InputSchemaKey()
    metrics = NumberMapKey(default=dict, error_messages={
        "invalid": 'metrics must map names to numbers, e.g. {{"auc": 0.93}}'})
    params = ObjectKey(default=dict, error_messages={"invalid": "params must be a JSON object"})
    output_schema = ObjectKey(default=dict, error_messages={
        "invalid": "output_schema must be a JSON object"})
    classes = ClassLabelsKey(default=dict)
    code = CodeKey(default=dict)
    tags = TagsKey(default=list)
    label = SemverKey(default="")
    dataset = DatasetKey(default=None)
    parent = ParentKey(default=None)
    description = TextKey(default="")
    triggered_by = TriggerKey(default=None)

    default_error_messages = {
        "not_object": "metadata must be a JSON object",
        "unknown_keys": "metadata has unknown keys: {unknown} (known: {known})",
    }

    def validate_empty_values(self, data):
        return False, data  # null is "not an object" like any other non-object

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                {"metadata": [self.error_messages["not_object"]]})
        unknown = set(data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError({"metadata": [
                self.error_messages["unknown_keys"].format(
                    unknown=", ".join(sorted(unknown)), known=", ".join(sorted(self.fields)))]})
        values = {}
        for name, field in self.fields.items():
            try:
                values[name] = field.run_validation(field.get_value(data))
            except serializers.ValidationError as e:  # the first refusal answers
                raise serializers.ValidationError({name: e.detail}) from e
        return values

    def stored_fields(self) -> dict:
        """What the version stores, from the validated document."""
        data = self.validated_data
        return {
            "input_schema": data["input_schema"],
            "output_schema": ({**data["output_schema"], "classes": data["classes"]}
                              if data["classes"] else data["output_schema"]),
            "metrics": data["metrics"],
            "params": data["params"],
            "code_repository": data["code"].get("repository", ""),
            "code_commit": data["code"].get("commit", ""),
            "tags": data["tags"],
            "label": data["label"],
            "dataset": data["dataset"],
            "parent": data["parent"],
            "description": data["description"],
            "triggered_by": data["triggered_by"],  # not a column: register_version passes it on
        }


def parse_version_metadata(model: RegisteredModel, metadata) -> dict:
    """Check the metadata document of a new version; return the fields to store.

    Raises ``ValidationFailed`` naming the first offending field.
    """
    spec = VersionMetadataSerializer(data=metadata, context={"model": model})
    if not spec.is_valid():
        field, (error, *_) = next(iter(spec.errors.items()))
        raise ValidationFailed(str(error), code=error.code if error.code in DOMAIN_CODES else None,
                               field=field)
    return spec.stored_fields()
