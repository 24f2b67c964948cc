"""Small PromQL helpers: read the metric names out of an expression, build label selectors.

Pure: no I/O. ``metric_names`` is a tokenizer, not a parser: it drops strings, label
matchers, ranges, grouping clauses and Grafana variables, then keeps the identifiers that are
not functions or keywords. That is enough to check that every dashboard query and alert
expression of ours names only catalogue metrics; ``promtool`` checks the syntax itself.
"""

from __future__ import annotations

import re

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VARS = re.compile(r"\$\{[^}]*\}|\$\w+")
_BRACES = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_TOKENS = re.compile(r"\d[\w.]*|[A-Za-z_:][\w:]*(\s*\()?")
_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "atan2",
        "start",
        "end",
    }
)


def metric_names(expr: str) -> set[str]:
    """The metric (series) names an expression selects, e.g. ``{"mlkube_requests_total"}``.

    Pure. Histogram series keep their suffix (``..._bucket``); map them with
    ``catalogue.base_name``.
    """
    text = _STRINGS.sub('""', expr)
    text = _GRAFANA_VARS.sub("1", text)
    text = _BRACES.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names: set[str] = set()
    for match in _TOKENS.finditer(text):
        token = match.group(0)
        if token[0].isdigit() or token.endswith("("):
            continue  # a number or duration, or a function / aggregation call
        if token.lower() in _KEYWORDS:
            continue
        names.add(token)
    return names


def selector(labels: dict[str, str], **extra: str) -> str:
    """A label selector body ``namespace="ml",deployment="iris"`` (values escaped). Pure.

    Keyword arguments are added verbatim as matchers, e.g. ``code='=~"5.."'``.
    """
    parts = [f'{key}="{_escape(value)}"' for key, value in labels.items()]
    parts += [f"{key}{matcher}" for key, matcher in extra.items()]
    return ",".join(parts)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
