"""The Plotly.js the portal serves is the one scripts/plotly builds, and draws every chart.

static/vendor/plotly/plotly.min.js holds only the trace types the charts use (scripts/plotly:
entry.js, rebuilt by `make plotly`, which records the bundle in bundle.json). A chart given a
trace type the bundle lacks draws nothing, so every trace type named in the portal's Python,
JavaScript and templates must be registered in the bundle.
"""

import hashlib
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "static" / "vendor" / "plotly" / "plotly.min.js"
RECORD = ROOT / "scripts" / "plotly" / "bundle.json"
SOURCES = [("explainability", "*.py"), ("portal", "*.py"), ("ops", "*.py"),
           ("static/js", "*.js"), ("templates", "*.html")]
# `"type": "bar"`, `type="bar"`, `trace.type = "scatter"`, `trace.type === "scattergl"`
TYPE = re.compile(r"""\btype["']?\s*(?::|===?|==)\s*["']([a-z0-9]+)["']""")


def plotly_trace_types() -> set[str]:
    import plotly.graph_objs as go
    from plotly.basedatatypes import BaseTraceType

    classes = (getattr(go, name) for name in go.__all__ if name[:1].isupper())
    return {cls().plotly_name for cls in classes
            if isinstance(cls, type) and issubclass(cls, BaseTraceType)}


def test_committed_bundle_is_the_recorded_build():
    record = json.loads(RECORD.read_text())
    data = BUNDLE.read_bytes()
    assert record["file"] == "static/vendor/plotly/plotly.min.js"
    assert (len(data), hashlib.sha256(data).hexdigest()) == (record["bytes"], record["sha256"]), \
        "plotly.min.js is not what scripts/plotly built: run `make plotly`"
    registered = set(re.findall(r'moduleType:"trace",name:"(\w+)"', BUNDLE.read_text()))
    assert registered == set(record["traces"])


def test_every_trace_type_the_portal_uses_is_in_the_bundle():
    traces = plotly_trace_types()
    used = {}
    for folder, pattern in SOURCES:
        for path in (ROOT / folder).rglob(pattern):
            if "migrations" in path.parts:
                continue
            for name in TYPE.findall(path.read_text(errors="replace")):
                if name in traces:
                    used.setdefault(name, str(path.relative_to(ROOT)))
    assert {"scatter", "bar"} <= used.keys()  # the scan finds the charts
    bundled = set(json.loads(RECORD.read_text())["traces"])
    missing = {name: where for name, where in used.items() if name not in bundled}
    assert not missing, f"trace types not in static/vendor/plotly/plotly.min.js: {missing}; " \
        "add them to scripts/plotly/entry.js and TRACES in build.mjs, then `make plotly`"
