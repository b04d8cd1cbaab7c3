import datetime
import decimal

from django import template
from django.contrib.humanize.templatetags.humanize import naturaltime
from django.template import defaulttags
from django.urls import NoReverseMatch
from django.utils.html import conditional_escape, format_html, format_html_join
from django.utils.safestring import mark_safe

from ops import numbers
from portal.reversing import reverse

register = template.Library()


class _URLNode(defaulttags.URLNode):
    """``{% url %}`` through ``portal.reversing.reverse`` (each address worked out once)."""

    def render(self, context):
        args = [arg.resolve(context) for arg in self.args]
        kwargs = {k: v.resolve(context) for k, v in self.kwargs.items()}
        view_name = self.view_name.resolve(context)
        try:  # as Django's tag finds it
            current_app = context.request.current_app
        except AttributeError:
            try:
                current_app = context.request.resolver_match.namespace
            except AttributeError:
                current_app = None
        try:
            url = reverse(view_name, args=args, kwargs=kwargs, current_app=current_app)
        except NoReverseMatch:
            if self.asvar is None:
                raise
            url = ""
        if self.asvar:
            context[self.asvar] = url
            return ""
        return conditional_escape(url) if context.autoescape else url


@register.tag
def url(parser, token):
    """Django's ``{% url %}``, same syntax and output (this library is a builtin, so it
    stands for Django's in every template)."""
    node = defaulttags.url(parser, token)
    node.__class__ = _URLNode
    return node


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if hasattr(mapping, "get") else None


@register.filter
def short_sha(value, length=12):
    return (value or "")[: int(length)]


@register.filter
def filesize(value):
    size = float(value or 0)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


@register.filter
def metric(value):
    if isinstance(value, float):
        return num(value)
    return value


_UNSAFE = mark_safe(' <span class="badge unsafe" title="pickle/joblib: can run code when '
                    'loaded">unsafe format</span>')


@register.simple_tag
def version_rows(versions, aliases_of, metric_names, comparable):
    """The model page's version table, a row per version (the model page's most visited
    part): written here rather than as template nodes, whose thirty lookups and filters a row
    cost 175 µs (25 rows: a third of the page's CPU); this costs about 40. The status badge
    is ``registry/inc/status.html``'s."""
    rows = []
    for version in versions:
        name = version.display_name
        pick = (format_html('<td class="pick"><input type="checkbox" name="v" value="{}" '
                            'form="compare-form" aria-label="Compare {}"></td>',
                            version.number, name) if comparable else "")
        aliases = format_html_join("", ' <span class="badge alias">{}</span>',
                                   ((alias.name,) for alias in aliases_of.get(version.pk, ())))
        metrics = version.metrics if hasattr(version.metrics, "get") else {}
        cells = format_html_join("", '<td class="num">{}</td>',
                                 ((metric(metrics.get(n)) or "—",) for n in metric_names))
        parent = f"v{version.parent.number}" if version.parent else "—"
        dataset = (format_html('<a href="{}">{}</a>', version.dataset.get_absolute_url(),
                               version.dataset.name) if version.dataset else "—")
        rows.append(format_html(
            '<tr>{}<td><a href="{}"><strong>{}</strong></a>{}</td>\n'
            '      <td><span class="badge status-{}" title="{}">{}</span>{}</td>\n'
            '      <td class="small">{}</td>\n      {}\n      <td>{}</td>\n      <td>{}</td>\n'
            '      <td>{}</td>\n      <td>{}</td></tr>\n',
            pick, version.get_absolute_url(), name, aliases, version.status,
            version.status_reason, version.get_status_display(),
            _UNSAFE if version.is_unsafe else "",
            estimator(version.estimator).replace("sklearn.", ""), cells, parent, dataset,
            (version.created_by.username if version.created_by else "") or "—",
            when(version.created_at)))
    return mark_safe("    ".join(rows))  # noqa: S308 - each row is built by format_html


@register.filter
def change(value):
    """Render an audit change: ``{"from", "to"}`` as "old → new", anything else as itself."""
    if isinstance(value, dict) and set(value) == {"from", "to"}:
        old, new = value["from"], value["to"]
        return f"{'—' if old in (None, '') else old} → {'—' if new in (None, '') else new}"
    if value is None:
        return "—"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return value


@register.filter
def with_measurements(events):
    """The newest event that carries measurements (events are newest first)."""
    return next((e for e in events if e.measurements), None)


@register.filter
def words(value):
    """``rolled_back`` → ``Rolled back``."""
    return str(value or "").replace("_", " ").capitalize()


@register.filter
def with_weights(events):
    """The newest event that applied a plan (events are newest first)."""
    return next((e for e in events if e.weights), None)


GATE_WORDS = {"min": "≥ {}", "max": "≤ {}", "max_drop": "at most {} below the champion",
              "max_rise": "at most {} above the champion"}


@register.filter
def gate_rule(rule):
    """``{"metric": "auc", "min": 0.9, "model": "m"}`` → ``auc ≥ 0.9 (m only)``."""
    if not isinstance(rule, dict):
        return rule
    kind = next((k for k in GATE_WORDS if k in rule), None)
    if kind is None:
        return rule
    text = f"{rule.get('metric')} {GATE_WORDS[kind].format(rule[kind])}"
    return text + (f" ({rule['model']} only)" if rule.get("model") else "")


@register.filter(is_safe=True)
def chart_json(figure, element_id):
    """``json_script`` for a chart's figure, also one encoded once (``EncodedChart``)."""
    from portal.views import chart_script

    return chart_script(figure, element_id)


@register.filter
def as_json(value, indent=None):
    """``value`` as JSON; ``as_json:2`` indented, for a document people read."""
    import json

    return json.dumps(value, sort_keys=True, indent=indent)


@register.filter
def percent(value):
    """0.0123 -> "1.2%", with more digits below 1 % so a small share never shows as 0 %."""
    try:
        return numbers.percent(float(value))
    except (TypeError, ValueError):
        return ""


@register.filter
def duration_words(seconds):
    """3600 -> "1 h", 604800 -> "7 days", 90 -> "90 s"."""
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        return ""
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:g} days"
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    if seconds >= 120:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


@register.filter
def num(value, digits=3):
    """A number for people (``ops.numbers``): three significant figures, thousands
    separated, counts exact, "—" for nothing or a value that is not finite; text that is
    not a number is shown as it is."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    if not isinstance(value, int | float | decimal.Decimal):
        return value
    return numbers.number(value, int(digits))


@register.filter
def ms(seconds):
    """A duration in seconds shown in the unit people read: 0.0112 -> "11.2 ms"."""
    try:
        return numbers.seconds(float(seconds))
    except (TypeError, ValueError):
        return "—" if seconds in (None, "") else seconds


@register.filter(is_safe=True)
def when(value):
    """The portal's one way to show a moment: relative words ("3 minutes ago", kept moving
    by static/js/time.js), the exact UTC time on hover and in the datetime attribute."""
    if not value:
        return "—"
    if not isinstance(value, datetime.datetime):
        return value
    value = value.astimezone(datetime.UTC)
    exact = value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return format_html('<time datetime="{}" title="{}">{}</time>', value.isoformat(),
                       exact, naturaltime(value))


@register.filter
def estimator(value):
    """A stored estimator path as its library documents it, for versions stored before the
    worker recorded it so: ``sklearn.ensemble._gb.GradientBoostingClassifier`` ->
    ``sklearn.ensemble.GradientBoostingClassifier``."""
    from ops.artifacts import public_name

    return public_name(str(value)) if value else "—"
