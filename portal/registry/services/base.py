"""What the registry's services share: a model's own checks as a ``ValidationFailed``."""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import ValidationError

from portal.errors import ValidationFailed


def _full_clean(instance, exclude: Iterable[str] = ()) -> None:
    try:
        instance.full_clean(exclude=list(exclude), validate_unique=False, validate_constraints=False)
    except ValidationError as e:
        field, messages = next(iter(e.message_dict.items()))
        field = None if field == "__all__" else field
        raise ValidationFailed("; ".join(messages) if field is None else
                               f"{field}: {'; '.join(messages)}", field=field) from e
