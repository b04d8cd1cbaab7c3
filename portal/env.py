"""Typed reads of environment variables for the settings module.

Every variable may also be given as ``NAME_FILE`` pointing at a file that holds the value
(how Kubernetes and Docker mount secrets). A value that does not parse stops start-up with
a message naming the variable, rather than running with a surprising default.
"""

from __future__ import annotations

import os
from pathlib import Path


class ConfigError(RuntimeError):
    pass


def _raw(name: str) -> str | None:
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as e:
            raise ConfigError(f"{name}_FILE={path} cannot be read: {e}") from e
    return os.environ.get(name)


def env_str(name: str, default: str = "") -> str:
    value = _raw(name)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool = False) -> bool:
    value = _raw(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean (use true or false)")


def env_int(name: str, default: int) -> int:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as e:
        raise ConfigError(f"{name}={value!r} is not an integer") from e


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """One of ``choices``, in any case ("info" is INFO); anything else stops start-up."""
    value = env_str(name, default).strip().upper()
    if value not in choices:
        raise ConfigError(f"{name}={value.lower()!r} is not one of "
                          f"{', '.join(c.lower() for c in choices)}")
    return value


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    value = _raw(name)
    if value is None or value == "":
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]
