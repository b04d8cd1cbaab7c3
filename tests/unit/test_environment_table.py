"""Every environment variable the code reads has a row in the README's configuration
tables, and every row there names a variable the code reads (issue 15).

The code under ops/, explainability/, portal/ and workers/ is read with ``ast``, not
imported. A read is a call of one of ``READERS`` with the name as its first argument, or
``os.environ.get(NAME)``, ``os.getenv(NAME)``, ``os.environ[NAME]`` or ``NAME in
os.environ``; the same on a parameter ``environ`` that defaults to ``os.environ`` counts
too (ops/serving takes one so its tests can pass a dict). NAME is a string literal or a
module-level string constant, of the module itself or imported from another
(``KEY_ENV``). A read whose name is neither (a helper passing its argument on, a loop
over names) is refused unless ``INDIRECT`` lists its function and says what it reads, so a
new one fails here until someone looks at it.

The README's rows are the lines of its "Configuration" section that start with
``| `NAME` |``: one variable a row. ``NAME_FILE`` twins (``portal/env.py``) are said once
above the tables, not listed.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ops", "explainability", "portal", "workers")

# Functions whose first argument is the name of the variable they read: the typed helpers
# of portal/env.py, and the model server's own (ops/serving/server.py: it runs without
# Django or the portal's packages).
READERS = {"env_str", "env_bool", "env_int", "env_list", "env_choice", "_env_int"}

# Reads whose name is not a literal nor a constant, by "path:function", and why no name is
# missing because of them.
INDIRECT = {
    # The typed helpers themselves (NAME and NAME_FILE): their callers are collected.
    "portal/env.py:_raw": "the name its caller in READERS gave",
    "portal/env.py:env_choice": "the name its caller gave (through env_str)",
    # The model server's integer helper: its callers are collected through READERS.
    "ops/serving/server.py:_env_int": "the name its caller gave",
    # Hands PATH, LANG, LC_ALL, TZ and PYTHONHASHSEED on to the sandboxed child unchanged:
    # the system's variables, not Modelgate's configuration.
    "ops/sandbox.py:child_environment": "PASSED_ENV, passed through",
}

ROW = re.compile(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|")


class Read(NamedTuple):
    name: str | None  # None: not a literal nor a constant
    where: str  # path:line
    function: str  # "path:function" (or "path:<module>")


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "text"`` assignments."""
    found = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value.value
    return found


def _is_os_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ"
            and isinstance(node.value, ast.Name) and node.value.id == "os")


def _environ_params(function: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Parameters of ``function`` that default to ``os.environ``."""
    args = function.args
    positional = args.posonlyargs + args.args
    pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults,
                     strict=True))
    pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
              if d is not None]
    return {a.arg for a, d in pairs if _is_os_environ(d)}


class _Finder(ast.NodeVisitor):
    def __init__(self, path: str, names: dict[str, str]):
        self.path, self.names = path, names
        self.reads: list[Read] = []
        self.stack: list[tuple[str, set[str]]] = []

    def _environ(self, node: ast.AST) -> bool:
        if _is_os_environ(node):
            return True
        return (isinstance(node, ast.Name) and bool(self.stack)
                and node.id in self.stack[-1][1])

    def _add(self, node: ast.AST, name_node: ast.AST) -> None:
        name = None
        if isinstance(name_node, ast.Constant) and isinstance(name_node.value, str):
            name = name_node.value
        elif isinstance(name_node, ast.Name):
            name = self.names.get(name_node.id)
        function = self.stack[-1][0] if self.stack else "<module>"
        self.reads.append(Read(name, f"{self.path}:{node.lineno}", f"{self.path}:{function}"))

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.stack.append((node.name, _environ_params(node)))
        self.generic_visit(node)
        self.stack.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if node.args and (
                called in READERS
                or (isinstance(func, ast.Attribute) and func.attr == "get"
                    and self._environ(func.value))
                or (isinstance(func, ast.Attribute) and func.attr == "getenv"
                    and isinstance(func.value, ast.Name) and func.value.id == "os")):
            self._add(node, node.args[0])
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.ctx, ast.Load) and self._environ(node.value):
            self._add(node, node.slice)
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        lefts = [node.left, *node.comparators[:-1]]  # a chain: each operator's left side
        for left, op, right in zip(lefts, node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn) and self._environ(right):
                self._add(node, left)
        self.generic_visit(node)


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def environment_reads(root: Path = ROOT) -> list[Read]:
    """Every read of an environment variable in the product's code."""
    trees = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            trees[path] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    constants = {_module_name(root, path): _constants(tree) for path, tree in trees.items()}
    reads = []
    for path, tree in trees.items():
        names = dict(constants[_module_name(root, path)])
        for node in ast.walk(tree):  # constants imported from another module: KEY_ENV
            if isinstance(node, ast.ImportFrom) and node.module in constants:
                for alias in node.names:
                    if alias.name in constants[node.module]:
                        names[alias.asname or alias.name] = constants[node.module][alias.name]
        finder = _Finder(path.relative_to(root).as_posix(), names)
        finder.visit(tree)
        reads += finder.reads
    return reads


def table_rows(readme: str) -> tuple[list[str], list[str]]:
    """The variables of the configuration section's rows, and the rows that start with a
    name but name more than one (or not only a name) in their first cell."""
    section = readme.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    names, odd = [], []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        match = ROW.match(line)
        if match:
            names.append(match.group(1))
        else:
            odd.append(line.split("|")[1].strip())
    return names, odd


def differences(reads: list[Read], readme: str) -> list[str]:
    """What the test reports: one line per problem."""
    problems = []
    for read in reads:
        if read.name is None and read.function not in INDIRECT:
            problems.append(f"{read.where}: reads a variable by a name that is not a literal "
                            "or a constant; list what it reads in INDIRECT")
    read_names = {read.name for read in reads if read.name is not None}
    # A NAME_FILE read beside NAME is its twin (the model server's prediction key): said
    # with NAME's row, not a row of its own.
    read_names -= {name for name in read_names
                   if name.endswith("_FILE") and name.removesuffix("_FILE") in read_names}
    rows, odd = table_rows(readme)
    problems += [f"row {cell}: one variable a row" for cell in odd]
    problems += [f"{name}: in {count} rows" for name, count in Counter(rows).items()
                 if count > 1]
    for name in sorted(read_names - set(rows)):
        where = ", ".join(sorted({r.where for r in reads if r.name == name}))
        problems.append(f"{name}: read ({where}) but not in the README's table")
    problems += [f"{name}: in the README's table but read nowhere"
                 for name in sorted(set(rows) - read_names)]
    return problems


def test_every_variable_read_is_in_the_readme_table_and_every_row_is_read():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    problems = differences(environment_reads(), readme)
    assert not problems, "\n".join(problems)


def test_the_check_finds_reads_and_rows(tmp_path):
    (tmp_path / "ops").mkdir()
    (tmp_path / "portal").mkdir()
    (tmp_path / "ops" / "names.py").write_text('KEY_ENV = "A_KEY"\n')
    (tmp_path / "ops" / "server.py").write_text(
        "import os\n"
        "from ops.names import KEY_ENV as K\n"
        'LOCAL = "A_LOCAL"\n'
        "def key(environ=os.environ):\n"
        "    return environ.get(K), environ[LOCAL]\n"
        'PORT = os.getenv("A_PORT") or "A_BIND" in os.environ\n'
        'os.environ["A_WRITTEN"] = "1"\n'
        "def each(names):\n"
        "    return [os.environ.get(n) for n in names]\n")
    (tmp_path / "portal" / "settings.py").write_text(
        "from portal.env import env_int\n"
        'SIZE = env_int("A_SIZE", 1)\n')
    readme = ("# x\n## Configuration\n\n| variable | default | meaning |\n|---|---|---|\n"
              "| `A_KEY` | unset | k |\n| `A_SIZE` | 1 | s |\n| `A_SIZE` | 1 | s |\n"
              "| `A_PORT` / `_BIND` | 1 | p |\n| `A_GONE` | – | g |\n\n## Next\n"
              "| `A_LOCAL` | elsewhere | not the configuration section |\n")
    assert differences(environment_reads(tmp_path), readme) == [
        "ops/server.py:9: reads a variable by a name that is not a literal or a constant; "
        "list what it reads in INDIRECT",
        "row `A_PORT` / `_BIND`: one variable a row",
        "A_SIZE: in 2 rows",
        "A_BIND: read (ops/server.py:6) but not in the README's table",
        "A_LOCAL: read (ops/server.py:5) but not in the README's table",
        "A_PORT: read (ops/server.py:6) but not in the README's table",
        "A_GONE: in the README's table but read nowhere",
    ]
