"""Error texts people read, without the server's paths.

Reader and loader errors (pandas, pyarrow, OSError) name the file they failed on; those
texts become dataset profile reasons, version status reasons and explanation reasons, shown
to every member of the project. Where the portal keeps its files is none of their business
(issue 18): the file's own path becomes "the file", any other absolute path "<path>".
"""

from __future__ import annotations

import re
from pathlib import Path

_ABSOLUTE_PATH = re.compile(r"(?<![\w/.-])(?:file://)?/[\w.+@-]+(?:/[\w.+@-]+)+/?")


def without_paths(text: str, path: str | Path | None = None) -> str:
    """``text`` with ``path`` (as given and resolved) and any absolute path replaced."""
    if path is not None:
        for form in sorted({str(path), str(Path(path).resolve())}, key=len, reverse=True):
            text = text.replace(form, "the file")
    return _ABSOLUTE_PATH.sub("<path>", text)
