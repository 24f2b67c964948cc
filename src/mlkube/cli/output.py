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
    from rich.console import RenderableType

    from mlkube.backends.base import Table


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
        console.print(tables_renderable(tables, ()))
    for line in captured.get().splitlines():
        print_info(line.rstrip())
    for note in notes:
        print_info(note)


def tables_renderable(tables: Sequence[Table], notes: Sequence[str] = ()) -> RenderableType:
    """``tables`` and ``notes`` as one rich renderable (for printing or a live view)."""
    from rich.console import Group
    from rich.table import Table as RichTable
    from rich.text import Text

    parts: list[RenderableType] = []
    for table in tables:
        shown = RichTable(title=table.title or None, title_justify="left", box=None, pad_edge=False)
        for column in table.columns:
            shown.add_column(column, overflow="fold")
        for row in table.rows:
            shown.add_row(*(Text(cell) for cell in row))  # Text: cells are never markup
        parts.append(shown)
    parts.extend(Text(note) for note in notes)
    return Group(*parts)


def show_live(frames: Iterable[tuple[Sequence[Table], Sequence[str]]]) -> None:
    """Redraw the tables and notes of each frame in place until ``frames`` ends."""
    from rich.console import Console
    from rich.live import Live

    console = Console(highlight=False)
    try:
        with Live(console=console, refresh_per_second=2, screen=False) as live:
            for tables, notes in frames:
                live.update(tables_renderable(tables, notes))
    finally:
        if not console.is_terminal:  # Live leaves its last frame without a line end there
            console.line()
