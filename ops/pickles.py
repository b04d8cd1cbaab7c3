"""What a pickle would import, read without loading it.

A pickle runs code only through the callables it names (``GLOBAL``, ``STACK_GLOBAL``,
``INST``): unpickling looks each one up by module and name before calling it. Reading
those names with ``pickletools`` — which parses opcodes and calls nothing — tells whether
every one is a type the portal already trusts in skops files (scikit-learn's estimators,
numpy's arrays and scalars, the types of ``ops.artifacts.TRUSTED_SKOPS_TYPES`` and the
operator's), plus the few functions pickle itself rebuilds arrays with. Such a pickle can
be converted to skops (``ops.sandbox`` with ``allowed_globals``: the child's unpickler
refuses any other name, so a name this reading missed is refused there too). Anything
else — a name that is not trusted, one built on the stack this reading cannot follow, an
extension code — is "not trusted" and left to the project's unsafe-format policy.

MLflow's scikit-learn flavour wrote pickles (``cloudpickle``) by default before it moved
to skops, so models imported from MLflow are the main users (decision 66).
"""

from __future__ import annotations

import pickletools
from functools import lru_cache

# How pickle rebuilds numpy arrays and scalars (protocols 2 to 5); none runs user code.
PICKLE_PLUMBING = frozenset({
    "numpy.dtype", "numpy.ndarray",
    "numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar",
    "numpy._core.numeric._frombuffer", "numpy.core.numeric._frombuffer",
    # Protocols 2 and 3 write bytes as _codecs.encode(text, "latin1").
    "_codecs.encode",
    "builtins.slice", "builtins.bytearray", "builtins.complex", "builtins.set",
    "builtins.frozenset", "builtins.dict", "builtins.list", "builtins.tuple",
})

UNKNOWN = "<a name built on the stack>"
_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING",
            "BINSTRING", "STRING"}
_GETS = {"GET", "BINGET", "LONG_BINGET"}
_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_EXTENSIONS = {"EXT1", "EXT2", "EXT4"}


def pickle_globals(data: bytes) -> set[str]:
    """Every ``module.name`` the pickle ``data`` would look up, ``UNKNOWN`` for a lookup
    whose name this reading cannot tell. Raises ``ValueError`` for bytes that are not a
    pickle (or hold more than one: joblib's containers are not read here)."""
    found: set[str] = set()
    recent: list = []  # what the last opcodes pushed: a string, or None for anything else
    memo: dict = {}
    for opcode, arg, _ in pickletools.genops(data):
        name = opcode.name
        if name in _STRINGS:
            recent.append(arg if isinstance(arg, str) else None)
        elif name == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif name in _PUTS:
            memo[arg] = recent[-1] if recent else None
        elif name in _GETS:
            recent.append(memo.get(arg))
        elif name == "STACK_GLOBAL":
            module, attr = (recent[-2:] if len(recent) >= 2 else [None, None])
            found.add(f"{module}.{attr}" if isinstance(module, str) and isinstance(attr, str)
                      else UNKNOWN)
            recent.append(None)
        elif name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            found.add(f"{module}.{attr}")
            recent.append(None)
        elif name in _EXTENSIONS:
            found.add(UNKNOWN)  # copyreg's extension registry: a name chosen elsewhere
            recent.append(None)
        else:
            recent.append(None)
    return found


@lru_cache(maxsize=4)
def trusted_globals(extra: tuple[str, ...] = ()) -> frozenset[str]:
    """The names a pickle may look up and still be converted: the types skops trusts by
    default, ``ops.artifacts.TRUSTED_SKOPS_TYPES``, the operator's ``extra`` and
    ``PICKLE_PLUMBING``."""
    from skops.io import _trusted_types as skops_trusted

    from ops.artifacts import TRUSTED_SKOPS_TYPES

    names = set(PICKLE_PLUMBING) | set(TRUSTED_SKOPS_TYPES) | set(extra)
    for attr in dir(skops_trusted):
        value = getattr(skops_trusted, attr)
        if attr.endswith("_TYPE_NAMES") and isinstance(value, list | tuple):
            names.update(str(v) for v in value)
    return frozenset(names)


def untrusted_globals(data: bytes, extra: tuple[str, ...] = ()) -> list[str]:
    """The names in pickle ``data`` that are not trusted (sorted; empty: convertible)."""
    try:
        names = pickle_globals(data)
    except ValueError as e:
        return [f"<unreadable pickle: {e}>"]
    return sorted(names - trusted_globals(tuple(extra)))
