"""Merge JSON log lines of several replicas into one stream in time order (``mlkube logs``).

Pure: no I/O; the caller opens the files (``logfiles.read_rotated`` reads a replica's rotated
files oldest first). Each input stream is already in time order (one process writes it); the
merge is a k-way heap merge on the ``ts`` field, so it streams and never holds a whole file. A
line without a readable ``ts`` (a traceback line, text from a library that prints) keeps the
time of the line before it in its stream, so it stays next to the record it belongs to.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

import orjson

_TS_FIELD = re.compile(rb'"ts"\s*:\s*("([^"]+)"|[0-9.eE+-]+)')


@dataclass(frozen=True, slots=True, order=True)
class LogLine:
    """One line and where it came from; ``ts`` is seconds since the epoch."""

    ts: float
    source: str
    seq: int
    """Position within its stream: keeps equal timestamps in their original order."""
    text: str


def line_time(line: str) -> float | None:
    """The ``ts`` of a JSON log line in epoch seconds (RFC 3339 text or a number), or None.

    Pure. Reads the field with a regular expression first (cheap), and falls back to a JSON
    parse for unusual spacing.
    """
    match = _TS_FIELD.search(line.encode())
    raw: object
    if match is not None:
        raw = match.group(2).decode() if match.group(2) is not None else match.group(1).decode()
    else:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        raw = record.get("ts") if isinstance(record, dict) else None
    return _to_epoch(raw)


def _to_epoch(raw: object) -> float | None:
    if isinstance(raw, int | float):
        return float(raw)
    if not isinstance(raw, str):
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _timed(source: str, lines: Iterable[str]) -> Iterator[LogLine]:
    last = float("-inf")
    for seq, raw in enumerate(lines):
        text = raw.rstrip("\n")
        if not text:
            continue
        ts = line_time(text)
        if ts is None:
            ts = last
        else:
            last = ts
        yield LogLine(ts, source, seq, text)


MAX_SKEW_S = 1.0
"""How far out of order a line may be within its own stream. A replica's access lines are
buffered and written every 0.1 s, so they can land after a record logged later; lines
more out of order than this are emitted as they come."""


def _reordered(lines: Iterator[LogLine], max_skew_s: float) -> Iterator[LogLine]:
    """Sort a nearly sorted stream with a heap that holds ``max_skew_s`` of lines."""
    pending: list[LogLine] = []
    newest = float("-inf")
    for line in lines:
        newest = max(newest, line.ts)
        heapq.heappush(pending, line)
        while pending and pending[0].ts < newest - max_skew_s:
            yield heapq.heappop(pending)
    while pending:
        yield heapq.heappop(pending)


def merge_log_lines(
    streams: Mapping[str, Iterable[str]], *, max_skew_s: float = MAX_SKEW_S
) -> Iterator[LogLine]:
    """Every line of every stream, oldest first, ties broken by source name then position.

    Pure (consumes the iterables lazily, holding at most ``max_skew_s`` of lines per
    stream). ``streams`` maps a source name (the replica) to its lines, each stream in time
    order up to ``max_skew_s``.
    """
    ordered = (
        _reordered(_timed(name, lines), max_skew_s) for name, lines in sorted(streams.items())
    )
    return heapq.merge(*ordered)
