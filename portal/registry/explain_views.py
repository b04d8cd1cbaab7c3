"""The version page's explanations in words a stakeholder reads, and the boxes that explain
rows people send (``explain your rows`` here, ``try it`` on an endpoint page).

Class names come from the version (``ModelVersion.class_labels``); numbers are rounded by
``explainability.words``, the templates' rule. "Show" (a feature's effect, one row of the
sample) and the row forms answer with a fragment (htmx swaps it in; ``static/js/explain.js``
draws its charts); without htmx they answer with a page.
"""

from __future__ import annotations

import csv
import io
import json
import math
import threading
from collections import OrderedDict
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core import signing
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from explainability import shap_charts
from explainability.words import Output, label_of, num, quoted
from ops.schema import parse_input_schema
from portal.errors import DomainError, ValidationFailed
from portal.prepared import Prepared
from portal.registry import queries
from portal.registry.choices import ExplanationStatus
from portal.registry.models import Explanation, InstanceExplanation, ModelVersion
from portal.views import EncodedChart, from_htmx

MAX_ROWS = 100
MAX_TEXT = 1_000_000  # characters of pasted rows: 100 rows of a wide model fit easily


def _version(request, slug, name, number) -> ModelVersion:
    return get_object_or_404(queries.versions_for(request.user), model__project__slug=slug,
                             model__name=name, number=number)


def output_of(version: ModelVersion, output: str, target_class: str | None = None) -> Output:
    return Output.parse(output, version.class_labels, target_class)


# An explanation's columns only its charts and words read: for 500 rows of 30 inputs about
# half a megabyte of JSON, decoded only when they are drawn (once, see ``_drawn``).
CHART_COLUMNS = ("values", "rows", "outputs")
KEPT_DRAWINGS = 64  # per process: a version page's section, or a feature and row shown
_drawings: OrderedDict[tuple, dict] = OrderedDict()
_drawings_lock = threading.Lock()


def _drawn(version: ModelVersion, explanation: Explanation, part: tuple, draw) -> dict:
    """``draw(explanation)``: this ``part`` of a ready explanation's section, drawn once per
    process and kept (the least recently shown are dropped).

    A ready explanation never changes (``explain_version`` computes it once), and drawing
    its charts (thousands of points, encoded as the page's JSON) cost more than the rest of
    the version page. The key holds the explanation's row as stored and everything of the
    version that the words and charts read (its class names, the model's task), so what is
    shown is what drawing it now would show."""
    key = (explanation.pk, explanation.updated_at, explanation.seconds, version.pk,
           version.model.task, repr(version.class_labels), repr(version.classes), part)
    with _drawings_lock:
        found = _drawings.get(key)
        if found is not None:
            _drawings.move_to_end(key)
            return found
    if explanation.get_deferred_fields():
        explanation.refresh_from_db(fields=CHART_COLUMNS)
    drawing = draw(explanation)
    with _drawings_lock:
        _drawings[key] = drawing
        while len(_drawings) > KEPT_DRAWINGS:
            _drawings.popitem(last=False)
    return drawing


def _encoded(figure):
    return EncodedChart(figure) if figure is not None else None


@Prepared
def _explanation_of(version_id: int):
    """The version's explanation without its sample's columns (``first()``'s order)."""
    return (Explanation.objects.filter(version_id=version_id).defer(*CHART_COLUMNS)
            .order_by("pk")[:1])


def explanation_context(version: ModelVersion, query) -> dict:
    """The version page's explanation section: words, charts, a chosen feature and row."""
    explanation = _explanation_of.first(version.pk)
    if explanation is None or explanation.status != ExplanationStatus.READY:
        # Only a ready explanation has rows: the example is the schema's, with zeros.
        return {"explanation": explanation, "explain_example": example_text(version)}
    section = _drawn(version, explanation, ("section",),
                     lambda full: _section(version, full))
    return {
        "explanation": explanation, **section["context"],
        "explain_example": _example(version, section["first_row"]),
        **detail_context(version, explanation, query),
    }


METHODS = {"tree": "exact, for tree models", "linear": "exact, for linear models",
           "permutation": "model-agnostic, by permuting inputs"}


def _section(version: ModelVersion, explanation: Explanation) -> dict:
    """The section's words and its two charts over the whole sample."""
    from explainability.shap_values import plain_summary

    labels = version.class_labels
    out = output_of(version, explanation.output, explanation.target_class)
    names = explanation.feature_names
    return {"first_row": explanation.rows[0] if explanation.rows else None,
            "sample_rows": len(explanation.values), "context": {
        "explain_summary": plain_summary(explanation.as_dict(), version.model.task, labels),
        "explain_words": {
            "average": out.average(explanation.outputs, explanation.base_value),
            "how": out.how, "method": METHODS.get(explanation.method, explanation.method),
            "gap": ("less than 0.001" if explanation.max_additivity_error < 1e-3
                    else num(explanation.max_additivity_error)),
        },
        "importance_chart": _encoded(shap_charts.shap_importance(explanation.importance, out)),
        "beeswarm_chart": _encoded(shap_charts.shap_beeswarm(
            names, explanation.values, explanation.rows, explanation.importance, output=out)),
    }}


def detail_context(version, explanation, query) -> dict:
    """One feature's effect by its value and one row of the sample, input by input."""
    names = explanation.feature_names
    feature = query.get("feature") if query.get("feature") in names else (
        explanation.importance[0]["feature"] if explanation.importance else None)
    rows = _drawn(version, explanation, ("section",),
                  lambda full: _section(version, full))["sample_rows"]
    try:
        row = min(max(int(query.get("row", 0)), 0), rows - 1)
    except ValueError:
        row = 0

    def draw(full):
        out = output_of(version, full.output, full.target_class)
        return {
            "dependence_chart": _encoded(shap_charts.shap_dependence(
                feature, names, full.values, full.rows, output=out)) if feature else None,
            "waterfall_chart": _encoded(shap_charts.shap_waterfall(
                full.base_value, full.values[row], full.rows[row], names, out,
                labels=version.class_labels, classes=version.classes))
            if full.values else None,
        }

    return {"explain_feature": feature, "explain_row": row,
            **_drawn(version, explanation, ("detail", feature, row), draw)}


@login_required
def explanation_detail(request, slug, name, number):
    """"Show": the dependence and waterfall charts for the chosen feature and row."""
    version = _version(request, slug, name, number)
    explanation = get_object_or_404(Explanation.objects.defer(*CHART_COLUMNS), version=version,
                                    status=ExplanationStatus.READY)
    context = {"version": version, "explanation": explanation,
               **detail_context(version, explanation, request.GET)}
    if from_htmx(request):
        return render(request, "registry/inc/explain_detail.html", context)
    return render(request, "registry/explain_page.html",
                  {**context, "include": "registry/inc/explain_detail.html"})


# -- rows people send ------------------------------------------------------------------------


def example_text(version, explanation=None) -> str:
    """What the explain form starts with: a header naming the columns and one row (the
    first of the explained sample when there is one)."""
    return _example(version, explanation.rows[0] if explanation is not None
                    and explanation.rows else None)


def _example(version, row: list | None) -> str:
    try:
        names = [f.name for f in parse_input_schema(version.input_schema)]
    except Exception:  # noqa: BLE001 - a version without a usable schema offers no example
        return ""
    row = row if row else [0.0] * len(names)
    return ",".join(names) + "\n" + ",".join(num(v, 6).replace(",", "") for v in row)


def parse_rows(text: str, names: list[str]) -> list[list[float]]:
    """Rows typed or pasted by a person: CSV (a header line naming the columns, in any
    order, or the values in the order of the input schema) or JSON (an object keyed by
    feature name, or a list of them). Raises ``ValidationFailed`` saying what to fix."""
    text = (text or "").strip()
    if not text:
        raise ValidationFailed("Type or paste at least one row.", field="rows")
    if len(text) > MAX_TEXT:
        raise ValidationFailed(f"At most {MAX_TEXT:,} characters at a time (got "
                               f"{len(text):,}); send fewer rows, or use the API.",
                               field="rows")
    if text[0] in "[{":
        return _json_rows(text, names)
    dialect = "excel-tab" if "\t" in text.splitlines()[0] else "excel"
    try:
        lines = [line for line in csv.reader(io.StringIO(text), dialect)
                 if any(c.strip() for c in line)]
    except csv.Error as e:  # a cell longer than the csv module takes, a stray NUL
        raise ValidationFailed(f"These rows are not CSV the portal can read: {e}.",
                               field="rows") from e
    order = list(range(len(names)))
    first = [c.strip() for c in lines[0]]
    header = any(_not_number(c) for c in first) and any(c in names for c in first)
    if header:
        order = _header_order(first, names)
        lines = lines[1:]
        if not lines:
            raise ValidationFailed("The header names the columns; add a row of values under "
                                   "it.", field="rows")
    if len(lines) > MAX_ROWS:
        raise ValidationFailed(f"At most {MAX_ROWS} rows at a time (got {len(lines)}).",
                               field="rows")
    rows = []
    for number, line in enumerate(lines, start=2 if header else 1):
        if len(line) != len(names):
            raise ValidationFailed(
                f"Line {number} has {len(line)} values; the model takes {len(names)} "
                f"({_listed(names)}). Start with a header line naming the columns, or give "
                "the values in this order.", field="rows")
        row = [0.0] * len(names)
        for position, cell in zip(order, line, strict=True):
            row[position] = _number(cell, number, names[position])
        rows.append(row)
    return rows


def _listed(names: list[str]) -> str:
    return ", ".join(names[:4]) + (f", … {names[-1]}" if len(names) > 4 else "")


def _not_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return True
    return False


def _header_order(header: list[str], names: list[str]) -> list[int]:
    missing = [n for n in names if n not in header]
    unknown = [c for c in header if c not in names]
    if missing or unknown or len(set(header)) != len(header):
        parts = ([f"it lacks {_listed(missing)}"] if missing else []) + (
            [f"the model does not take {_listed(unknown)}"] if unknown else [])
        raise ValidationFailed("The header line does not match the model's inputs: "
                               + ("; ".join(parts) or "a column is named twice") + ".",
                               field="rows")
    return [names.index(c) for c in header]


def _number(cell, line: int, name: str) -> float:
    try:
        value = float(str(cell).strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValidationFailed(f"Line {line}, {name}: {str(cell).strip()[:40]!r} is not a "
                               "number.", field="rows")
    return value


def _json_rows(text: str, names: list[str]) -> list[list[float]]:
    try:
        document = json.loads(text)
    except ValueError as e:
        raise ValidationFailed(f"This is not valid JSON: {e.msg} (line {e.lineno}).",
                               field="rows") from e
    except RecursionError as e:  # "[[[[…": nested deeper than any row
        raise ValidationFailed("This JSON is nested too deeply: give a list of rows, each "
                               "an object keyed by column or a list of values.",
                               field="rows") from e
    items = document if isinstance(document, list) else [document]
    if items and not isinstance(items[0], dict | list):
        items = [items]  # one row as a plain list of values
    rows = []
    for number, item in enumerate(items[:MAX_ROWS + 1], start=1):
        if isinstance(item, dict):
            _header_order(list(item), names)
            item = [item[n] for n in names]
        if not isinstance(item, list) or len(item) != len(names):
            raise ValidationFailed(f"Row {number} must have {len(names)} values "
                                   f"({_listed(names)}).", field="rows")
        rows.append([_number(v, number, n) for v, n in zip(item, names, strict=True)])
    if len(rows) > MAX_ROWS:
        raise ValidationFailed(f"At most {MAX_ROWS} rows at a time.", field="rows")
    return rows


def answers_context(version: ModelVersion, item: InstanceExplanation, top: int = 3, *,
                    served: dict | None = None, polls: int = 0) -> dict:
    """What the answer fragment shows: what the endpoint answered (``served``, for "Try
    it"), then per row the predicted label and probability, the inputs that pushed most,
    and the first rows' waterfalls; while a worker computes them, how to ask again
    (``polls``: how many times the fragment asked already)."""
    context = {"version": version, "item": item,
               "served": served_answer(served, version) if served else None}
    if item.status == ExplanationStatus.PENDING:
        return {**context, **_poll(version, item, served, polls)}
    if item.status != ExplanationStatus.READY:
        return context
    result = item.result
    labels = version.class_labels
    out = output_of(version, result.get("output", ""),
                    str(version.classes[-1]) if version.classes else None)
    names = result["feature_names"]
    answers = []
    for index, (values, output) in enumerate(zip(result["values"], result["outputs"],
                                                 strict=True)):
        prediction = result["predictions"][index]
        pushes = sorted(range(len(values)), key=lambda j: -abs(values[j]))[:top]
        answers.append({
            "index": index + 1,
            "label": label_of(prediction, labels) if out.classifier else num(prediction),
            "verdict": out.verdict(output, labels, version.classes, predicted=prediction),
            "pushes": [{"feature": names[j], "value": num(item.rows[index][j]),
                        "towards": _towards(out, values[j], labels, version.classes)}
                       for j in pushes],
            "chart": shap_charts.shap_waterfall(result["base_value"], values,
                                                item.rows[index], names, out, labels=labels,
                                                classes=version.classes,
                                                predicted=prediction) if index < 3 else None,
            "chart_id": f"explained-{item.pk}-{index}",
        })
    return {**context, "answers": answers, "how": out.how,
            "background": result.get("background", "")}


# -- an answer still computed: polled, less and less often, for as long as a worker takes --

SERVED = ("prediction", "probability", "variant", "seconds")  # what "Try it" shows of it
SERVED_SALT = "modelgate.try-it.served"
MAX_POLLS = 40


def served_answer(answer: dict, version: ModelVersion) -> dict:
    """The endpoint's answer to "Try it", with its label in people's words."""
    return {**{k: answer.get(k) for k in SERVED},
            "label": label_of(answer.get("prediction"), version.class_labels)}


def _poll(version, item, served: dict | None, polls: int) -> dict:
    """Where and when the fragment asks again (1 s, then 2, 4, 8, 10 s apart), carrying the
    endpoint's answer signed (a poll cannot make the page show an answer it never got); or,
    once a worker would have answered (``LOST_AFTER``), how to retry."""
    from portal.registry.services.explanations import LOST_AFTER

    if (timezone.now() - (item.queued_at or item.created_at) > LOST_AFTER
            or polls >= MAX_POLLS):
        return {"stalled": round(LOST_AFTER.total_seconds() / 60)}
    query = {"n": polls + 1}
    if served:
        query["served"] = signing.dumps({"item": item.pk, **{k: served.get(k) for k in SERVED}},
                                        salt=SERVED_SALT)
    url = reverse("registry:version-explained", args=[
        version.model.project.slug, version.model.name, version.number, item.pk])
    return {"poll_url": f"{url}?{urlencode(query)}", "poll_delay": min(2 ** (polls // 3), 10)}


def _served_of(query, item) -> dict | None:
    """The endpoint's answer a poll carries, if its signature holds and it is this item's."""
    try:
        answer = signing.loads(query.get("served") or "", salt=SERVED_SALT, max_age=3600)
    except signing.BadSignature:
        return None
    return answer if isinstance(answer, dict) and answer.get("item") == item.pk else None


def _polls(query) -> int:
    try:
        return max(0, int(query.get("n", 0)))
    except ValueError:
        return MAX_POLLS


def _towards(out: Output, value: float, labels, classes) -> str:
    if abs(value) < 1e-9:
        return "no effect"
    if not out.classifier:
        return "up" if value > 0 else "down"
    if value > 0:
        return f"towards {quoted(out.label)}"
    others = [label_of(c, labels) for c in classes or [] if label_of(c, labels) != out.label]
    return f"towards {quoted(others[0])}" if len(others) == 1 else f"away from {quoted(out.label)}"


def _answer(request, version, template_context: dict):
    if from_htmx(request):
        return render(request, "registry/inc/row_answers.html", template_context)
    return render(request, "registry/explain_page.html",
                  {**template_context, "include": "registry/inc/row_answers.html"})


@login_required
@require_POST
def explain_rows(request, slug, name, number):
    """The version page's "Explain your rows": predictions and SHAP values of pasted rows,
    permission-checked by ``request_instance_explanation`` as the API's explain is."""
    from portal.registry.services import request_instance_explanation

    version = _version(request, slug, name, number)
    try:
        names = [f.name for f in parse_input_schema(version.input_schema)]
        rows = parse_rows(request.POST.get("rows", ""), names)
        item = request_instance_explanation(request.user, version, rows)
    except DomainError as e:
        return _answer(request, version, {"version": version, "error": e.detail})
    item.refresh_from_db()
    return _answer(request, version, answers_context(version, item))


@login_required
def explained_rows(request, slug, name, number, pk):
    """An answer still being computed, asked again (the fragment polls it)."""
    version = _version(request, slug, name, number)
    item = get_object_or_404(InstanceExplanation, version=version, pk=pk)
    return _answer(request, version, answers_context(
        version, item, served=_served_of(request.GET, item), polls=_polls(request.GET)))
