"""Where the CLI finds its token, and why never on the command line.

A token is read from ``MODELGATE_TOKEN`` (a CI secret), else from the file
``MODELGATE_TOKEN_FILE`` names, else from ``~/.config/modelgate/token`` (what ``modelgate
login`` writes, readable by its owner only). A token given as an argument would be kept in
the shell's history and shown to every user of the machine by ``ps``: the CLI refuses to
run when its arguments hold one.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

TOKEN_ENV = "MODELGATE_TOKEN"
TOKEN_FILE_ENV = "MODELGATE_TOKEN_FILE"
# Options people reach for; none exists, and each is refused with the reason.
SECRET_OPTIONS = ("--token", "--api-token", "--api-key", "--password", "--key")
# The portal's keys: "mg_" and 40 URL-safe characters (secrets.token_urlsafe(30)).
TOKEN_PATTERN = re.compile(r"mg_[A-Za-z0-9_-]{30,}")

REFUSAL = (
    "modelgate: refusing to run: {what} on the command line would be kept in your shell's "
    "history and shown to every user of this machine (ps).\n"
    "Give the token instead in the environment variable MODELGATE_TOKEN (from your CI's "
    "secret store), or in a file named by MODELGATE_TOKEN_FILE, or run `modelgate login`, "
    "which writes {default} (readable by you only)."
)


class CredentialsError(Exception):
    """No usable token, or one where it must not be."""


def default_token_file() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "modelgate" / "token"


def token_file() -> Path:
    """The file ``login`` writes and the CLI reads: ``MODELGATE_TOKEN_FILE`` or the
    default."""
    named = os.environ.get(TOKEN_FILE_ENV)
    return Path(named).expanduser() if named else default_token_file()


def secret_in_arguments(argv: list[str]) -> str | None:
    """What in ``argv`` is a secret (an option meant for one, or a token's value), in
    words; None when nothing is."""
    for arg in argv:
        option = arg.split("=", 1)[0]
        if option in SECRET_OPTIONS:
            return f"the option {option}"
        if TOKEN_PATTERN.search(arg):
            return "a token (mg_…)"
    return None


def refusal(what: str) -> str:
    return REFUSAL.format(what=what, default=default_token_file())


def load_token() -> tuple[str, str]:
    """The token and where it came from; ``CredentialsError`` saying what to do when there
    is none."""
    value = os.environ.get(TOKEN_ENV, "").strip()
    if value:
        return value, TOKEN_ENV
    path = token_file()
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        raise CredentialsError(
            f"no token: set {TOKEN_ENV}, or {TOKEN_FILE_ENV} to a file holding one, or run "
            f"`modelgate login` (it writes {path})") from None
    except OSError as e:
        raise CredentialsError(f"cannot read the token file {path}: {e.strerror}") from e
    if not value:
        raise CredentialsError(f"the token file {path} is empty")
    return value, str(path)


def loose_permissions(path: Path) -> bool:
    """Whether people other than the owner may read ``path``."""
    try:
        return bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))
    except OSError:
        return False


def save_token(token: str, path: Path | None = None) -> Path:
    """Write ``token`` to ``path`` (default ``token_file()``) readable by its owner only."""
    path = path or token_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Created 0600 (not chmod after writing): no moment when another user could open it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)  # an existing file keeps its mode on O_CREAT
        f.write(token + "\n")
    return path
