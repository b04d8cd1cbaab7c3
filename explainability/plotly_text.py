"""People's text in Plotly figures. No Django.

Plotly.js reads a subset of HTML in every text it draws — titles, legend names, hover text,
tick labels, annotations: ``<a href="…">`` becomes a live link, ``<b>`` bold text, ``<br>``
a new line. Class labels, feature names, category values, model, version and dataset names,
a rollout's reason are people's text, not markup: every chart builder passes them through
``safe``, which escapes ``&``, ``<`` and ``>`` so Plotly shows them as typed. The builders'
own markup (``<br>``, ``<extra>``) is added around the escaped text, never inside it.
"""

from __future__ import annotations


def safe(text) -> str:
    """``text`` as Plotly shows it literally: ``<a href="x">b</a>`` stays those characters."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
