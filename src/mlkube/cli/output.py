"""The only place that prints: messages, tables and machine-readable output.

rich is imported only where a table is drawn: ``mlkube serve`` prints through here too, and its
cold start must not pay for it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:  # only for the annotations: serve must not import any backend module
    from rich.console import Console, RenderableType

    from mlkube.backends.base import Table


COLUMN_GAP = 2
"""Spaces rich puts between two columns of a table without a box."""


def print_error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def print_info(message: str) -> None:
    print(message, flush=True)


def print_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def print_data(data: Any, output_format: str) -> None:
    """Print ``data`` as json or yaml."""
    if output_format == "json":
        print(json.dumps(data, indent=2, sort_keys=False, default=str), flush=True)
    else:
        print(yaml.safe_dump(data, sort_keys=False, default_flow_style=False), end="", flush=True)


def print_status(message: str) -> None:
    """Progress for a person, on stderr, so stdout stays a clean JSON log stream."""
    print(message, file=sys.stderr, flush=True)


def print_tables(tables: Sequence[Table], notes: Sequence[str] = ()) -> None:
    """Print ``tables`` as plain columns fitted to the terminal (80 columns when stdout is not
    one; long cells wrap), then ``notes``."""
    from rich.console import Console

    console = Console(highlight=False, color_system=None)
    with console.capture() as captured:
        console.print(tables_renderable(tables, (), width=console.width))
    for line in captured.get().splitlines():
        print_info(line.rstrip())
    for note in notes:
        print_info(note)


def tables_renderable(
    tables: Sequence[Table], notes: Sequence[str] = (), *, width: int = 80
) -> RenderableType:
    """``tables`` and ``notes`` as one rich renderable (for printing or a live view) ``width``
    columns wide: cells wrap at spaces, and the first column, which names the row (a
    deployment, a replica), stays whole as long as the other columns leave it room."""
    from rich.console import Group
    from rich.table import Table as RichTable
    from rich.text import Text

    parts: list[RenderableType] = []
    for table in tables:
        shown = RichTable(title=table.title or None, title_justify="left", box=None, pad_edge=False)
        name_width = _name_width(table, width)
        for index, column in enumerate(table.columns):
            shown.add_column(column, overflow="fold", min_width=name_width if index == 0 else None)
        for row in table.rows:
            shown.add_row(*(Text(cell) for cell in row))  # Text: cells are never markup
        parts.append(shown)
    parts.extend(Text(note) for note in notes)
    return Group(*parts)


def _name_width(table: Table, width: int) -> int:
    """How wide the first column can be kept: its widest cell, or what the other columns'
    longest words (which rich never breaks unless it must) leave of ``width``."""
    widest = max((len(row[0]) for row in table.rows), default=0)
    others = sum(
        max(
            len(word)
            for text in (column, *(row[index] for row in table.rows))
            for word in [*text.split(), ""]
        )
        for index, column in enumerate(table.columns)
        if index > 0
    )
    room = width - others - COLUMN_GAP * (len(table.columns) - 1)
    return max(min(widest, room), 1)


def show_live(
    frames: Iterable[tuple[Sequence[Table], Sequence[str]]], console: Console | None = None
) -> None:
    """Redraw the tables and notes of each frame in place until ``frames`` ends (on
    ``console``, default: the terminal; a frame taller than it loses its last lines)."""
    from rich.console import Console
    from rich.live import Live

    console = console or Console(highlight=False)
    try:
        with Live(console=console, refresh_per_second=2, screen=False) as live:
            for tables, notes in frames:
                live.update(tables_renderable(tables, notes, width=console.width), refresh=True)
    finally:
        if not console.is_terminal:  # Live leaves its last frame without a line end there
            console.line()
