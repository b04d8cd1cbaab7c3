"""The code forms layers, and may only import downwards (docs/architecture.md, Layers).

Every module under ops/, explainability/, portal/ and workers/ is read with ``ast`` (not
imported): every import counts, module-level or inside a function, absolute or relative.
Modules belong to units: ``ops``, ``explainability`` and ``workers``; each portal app
(``portal.<app>``, a folder); each top-level portal module (``portal.<module>``) and the
``portal`` package itself. URL routers (``*.urls``, which put every app's views together)
and ``portal.settings`` are in no unit and are not checked; migrations are skipped.

The check fails, naming the importing module and the imported one, on
(a) a cycle between units (a strongly connected component of the unit graph, however long),
(b) an arrow against the layers: a unit importing a unit of a higher layer, ops or
    explainability importing Django (or a Django package), a module importing a URL router
    or the settings module, or an app folder no layer names.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ops", "explainability", "portal", "workers")

# Bottom to top: a unit imports only units of its own layer or of layers below it (and no
# cycle, within a layer either). Top-level portal modules not named here are the framework
# (layer 2), which imports no app.
FRAMEWORK = "portal.<module>"
LAYERS: tuple[tuple[str, ...], ...] = (
    ("ops", "explainability"),  # no Django, no portal, no workers
    ("portal", FRAMEWORK, "portal.api"),  # errors, env, celery, queue, observability...
    ("portal.audit",),
    ("portal.accounts",),
    ("portal.registry",),
    ("portal.notifications",),
    ("portal.experiments",),
    ("portal.releases",),
    ("portal.monitoring",),
    ("portal.retraining",),  # rules on monitoring's alerts and experiments' feedback
    ("portal.retention", "portal.demo"),
    ("portal.web",),
    ("workers",),  # nothing in portal imports it: work is queued by task name
)
CORE = ("ops", "explainability")
DJANGO = {"django", "rest_framework", "django_filters", "drf_spectacular",
          "drf_spectacular_sidecar", "axes", "mozilla_django_oidc"}


class Edge(NamedTuple):
    importer: str  # module
    imported: str  # module (or a package's attribute: then the package)
    where: str = ""  # path:line


def excluded(module: str) -> bool:
    """URL routers and the settings: outside the layers (they put everything together)."""
    return module == "portal.settings" or module == "portal.urls" or module.endswith(".urls")


def unit_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "portal" or len(parts) == 1:
        return parts[0]
    return ".".join(parts[:2])


def layer_of(unit: str, layers=LAYERS, apps: frozenset[str] = frozenset()) -> int | None:
    """The unit's layer (0 is the bottom); None when no layer names it. A top-level portal
    module no layer names is the framework's; an app (a folder, in ``apps``) must be named."""
    for number, units in enumerate(layers):
        if unit in units:
            return number
    if unit.startswith("portal.") and unit not in apps:
        for number, units in enumerate(layers):
            if FRAMEWORK in units:
                return number
    return None


# Reading the sources ---------------------------------------------------------------------

def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the four packages, migrations left out."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" not in path.relative_to(root).parts:
                found[module_name(path, root)] = path
    return found


def imports_of(module: str, source: str, known: set[str], is_package: bool = False,
               filename: str = "") -> list[Edge]:
    """What a module's source imports, anywhere in it. ``from a import b`` is an import of
    module ``a.b`` when there is one (in ``known``), of ``a`` otherwise."""
    edges = []
    for node in ast.walk(ast.parse(source, filename or module)):
        where = f"{filename or module}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            edges += [Edge(module, alias.name, where) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                up = node.level - 1 if is_package else node.level
                base = base[:len(base) - up] if up else base
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                name = f"{base}.{alias.name}"
                edges.append(Edge(module, name if name in known else base, where))
    return edges


def project_edges(root: Path = ROOT) -> list[Edge]:
    modules = sources(root)
    known = set(modules)
    edges = []
    for module, path in modules.items():
        if excluded(module):
            continue
        edges += imports_of(module, path.read_text(), known, path.name == "__init__.py",
                            str(path.relative_to(root)))
    return edges


def app_folders(root: Path = ROOT) -> frozenset[str]:
    return frozenset(f"portal.{p.name}" for p in (root / "portal").iterdir()
                     if p.is_dir() and (p / "__init__.py").exists())


# The check -------------------------------------------------------------------------------

def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one node."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def problems(edges, layers=LAYERS, apps: frozenset[str] = frozenset(),
             packages=PACKAGES) -> list[str]:
    """Every cycle between units and every arrow against ``layers``, one line each (a
    cycle: a line, then one per import in it)."""
    found = []
    between: dict[tuple[str, str], list[Edge]] = defaultdict(list)
    for edge in sorted(set(edges)):
        first = edge.imported.split(".")[0]
        source = unit_of(edge.importer)
        if source in CORE and first in DJANGO:
            found.append(f"{edge.importer} imports {edge.imported} ({edge.where}): "
                         f"{source} uses no Django")
            continue
        if first not in packages:
            continue
        if excluded(edge.imported):
            found.append(f"{edge.importer} imports {edge.imported} ({edge.where}): URL "
                         "routers and the settings are outside the layers; import from the "
                         "app's own modules (django.conf.settings for settings)")
            continue
        target = unit_of(edge.imported)
        if target == source:
            continue
        between[source, target].append(edge)
        low, high = layer_of(source, layers, apps), layer_of(target, layers, apps)
        for unit, layer in ((source, low), (target, high)):
            if layer is None:
                found.append(f"{edge.importer} imports {edge.imported} ({edge.where}): "
                             f"{unit} is in no layer; place it in tests/unit/test_layers.py "
                             "LAYERS and docs/architecture.md")
        if low is not None and high is not None and high > low:
            found.append(f"{edge.importer} imports {edge.imported} ({edge.where}): "
                         f"{source} (layer {low + 1}) imports {target}, a layer above it "
                         f"({high + 1})")
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in between:
        graph[source].add(target)
    for component in strongly_connected(graph):
        found.append(f"import cycle between {', '.join(component)}:")
        for (source, target), imports in sorted(between.items()):
            if source in component and target in component:
                found += [f"    {e.importer} imports {e.imported} ({e.where})" for e in imports]
    return sorted(set(found), key=found.index)


# The tests -------------------------------------------------------------------------------

def test_the_code_imports_only_down_its_layers_and_has_no_cycle():
    edges = project_edges()
    assert len(edges) > 500, "the walk should see every module's imports"
    assert any(e.importer.startswith("workers.") for e in edges)
    found = problems(edges, apps=app_folders())
    assert not found, ("imports against the layers (docs/architecture.md, Layers):\n"
                       + "\n".join(found))


def test_every_portal_app_has_a_layer():
    unplaced = sorted(app for app in app_folders() if layer_of(app, apps=app_folders()) is None)
    assert not unplaced, f"place these apps in LAYERS (and the docs): {unplaced}"


def test_the_check_fails_on_cycles_and_upward_arrows():
    """The checker itself, on made-up module graphs."""
    assert not problems([Edge("portal.registry.views", "portal.accounts.services", "a:1"),
                         Edge("portal.web.views", "portal.registry.models", "b:2"),
                         Edge("ops.drift", "numpy", "c:3")])

    # An arrow upwards: named with both modules and where.
    upward = problems([Edge("portal.audit.api.views", "portal.accounts.services", "x.py:4")])
    assert len(upward) == 1
    assert "portal.audit.api.views imports portal.accounts.services (x.py:4)" in upward[0]
    assert "layer above" in upward[0]

    # A pair importing each other: a cycle, and the arrow that goes up.
    pair = problems([Edge("portal.registry.api.views", "portal.monitoring.services", "r:1"),
                     Edge("portal.monitoring.alerts", "portal.registry.models", "m:2")])
    assert any(p.startswith("import cycle between portal.monitoring, portal.registry")
               for p in pair)
    assert "    portal.registry.api.views imports portal.monitoring.services (r:1)" in pair
    assert "    portal.monitoring.alerts imports portal.registry.models (m:2)" in pair
    assert any("portal.registry (layer 5) imports portal.monitoring" in p for p in pair)

    # A cycle of three units in one layer: no two import each other, no arrow goes up.
    flat = (("a", "b", "c"),)
    ring = [Edge("a.x", "b.y"), Edge("b.y", "c.z"), Edge("c.z", "a.w")]
    found = problems(ring, layers=flat, packages="abc")
    assert found[0] == "import cycle between a, b, c:" and len(found) == 4
    assert not problems(ring[:2], layers=flat, packages="abc")

    # The bottom layer imports neither Django nor the portal; apps must be placed.
    assert problems([Edge("ops.drift", "django.conf", "d:1")])
    assert problems([Edge("explainability.shap_values", "rest_framework.fields", "e:1")])
    assert problems([Edge("ops.drift", "portal.errors", "f:1")])
    assert problems([Edge("portal.web.views", "workers.registry", "g:1")])
    assert problems([Edge("portal.errors", "portal.registry.models", "h:1")])
    assert any("portal.newapp is in no layer" in p for p in problems(
        [Edge("portal.newapp.views", "portal.errors", "i:1")],
        apps=frozenset({"portal.newapp"})))
    # A new top-level module is the framework's: it imports no app.
    assert not problems([Edge("portal.newmodule", "portal.errors", "j:1")])
    assert problems([Edge("portal.newmodule", "portal.audit.services", "j:2")])
    # Routers and settings are no one's to import.
    assert problems([Edge("portal.web.views", "portal.api.urls", "k:1")])


def test_imports_are_read_anywhere_and_relative_ones_resolved():
    known = {"portal.registry", "portal.registry.views", "portal.registry.queries",
             "portal.monitoring", "portal.monitoring.services", "portal.api.views"}
    source = ("from . import queries\n"
              "from .models import Project\n"
              "import portal.api.views as api\n"
              "def f():\n"
              "    from ..monitoring import services\n"
              "    from portal.monitoring.services import settings_of\n")
    found = {e.imported for e in imports_of("portal.registry.views", source, known)}
    assert found == {"portal.registry.queries", "portal.registry.models", "portal.api.views",
                     "portal.monitoring.services"}
    package = {e.imported for e in imports_of("portal.registry", "from . import views\n",
                                              known, is_package=True)}
    assert package == {"portal.registry.views"}
    # ``from portal import x`` of an attribute is an import of the package itself.
    assert {e.imported for e in imports_of("portal.web.health", "from portal import celery_app\n",
                                           known)} == {"portal"}
    assert problems([Edge("portal.registry.views", "portal.monitoring.services")])
