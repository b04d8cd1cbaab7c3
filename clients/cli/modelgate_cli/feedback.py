"""Outcomes for A/B tests, read from a CSV file or JSON lines, sent in batches.

CSV: a header with ``prediction_id`` and ``outcome`` (other columns are ignored). JSON
lines: one ``{"prediction_id": ..., "outcome": ...}`` object per line. Outcomes are numbers
(``1``, ``0``, ``12.5``) or ``true``/``false``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import IO

from modelgate_cli.client import Client

REQUIRED = ("prediction_id", "outcome")


class FeedbackFileError(ValueError):
    """A line of the file is not an item; the message names the line."""


def _number(text: str, line: int):
    word = text.strip().lower()
    if word in ("true", "false"):
        return word == "true"
    try:
        return int(word)
    except ValueError:
        pass
    try:
        return float(word)
    except ValueError:
        raise FeedbackFileError(f"line {line}: outcome {text!r} is not a number") from None


def read_csv(stream: IO[str]) -> Iterator[dict]:
    reader = csv.DictReader(stream)
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise FeedbackFileError(f"the CSV header has no {', '.join(missing)} column "
                                f"(it has: {', '.join(reader.fieldnames or []) or 'nothing'})")
    for row in reader:
        line = reader.line_num
        yield {"prediction_id": row["prediction_id"].strip(),
               "outcome": _number(row["outcome"] or "", line)}


def read_json_lines(stream: IO[str]) -> Iterator[dict]:
    for line, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        try:
            item = json.loads(text)
        except ValueError as e:
            raise FeedbackFileError(f"line {line}: not JSON ({e})") from None
        if not isinstance(item, dict) or any(k not in item for k in REQUIRED):
            raise FeedbackFileError(f"line {line}: an object with prediction_id and outcome "
                                    "is expected")
        yield {"prediction_id": item["prediction_id"], "outcome": item["outcome"]}


def read_items(stream: IO[str], kind: str) -> list[dict]:
    """Every item of ``stream``, read as ``kind`` (csv or jsonl)."""
    return list(read_csv(stream) if kind == "csv" else read_json_lines(stream))


def send(client: Client, items: list[dict], batch_size: int) -> dict:
    """Send ``items`` in batches; the totals, with each refusal's index in ``items``."""
    totals = {"items": len(items), "accepted": 0, "duplicates": 0, "rejected": 0, "errors": []}
    for start in range(0, len(items), batch_size):
        answer = client.feedback(items[start:start + batch_size])
        for key in ("accepted", "duplicates", "rejected"):
            totals[key] += int(answer.get(key, 0))
        for error in answer.get("errors", []):
            if isinstance(error.get("index"), int):
                error = {**error, "index": error["index"] + start}
            totals["errors"].append(error)
    return totals
