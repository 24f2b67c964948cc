"""Extract the commands README.md and docs/*.md show, in page order, for the docs walk.

The convention a page follows:

- A fenced block tagged ``console`` holds commands on lines starting with ``$ `` and, under
  each, the output the page shows for it; ``...`` in a shown line stands for anything.
- Every line of a ``sh``, ``bash`` or ``shell`` block is a command (a trailing ``\\`` joins the
  next line; blank lines and lines starting with ``#`` are skipped).
- HTML comments right before a block (blank lines between are fine) change how it is run:

  ``<!-- docs-test: skip REASON -->`` (or ``skip reason=REASON``)
      not run; the walk counts and lists it with REASON (a cluster, a synopsis ...).
  ``<!-- docs-test: exit=N -->``
      every command of the block exits with N (an error shown on purpose).
  ``<!-- docs-test: interrupt-when=TEXT -->``
      each command runs in a pseudo-terminal until TEXT appears on it, then gets Ctrl-C
      (SIGINT) and must exit 0 (a live view, ``logs -f``).
  ``<!-- docs-test: output-of=PREFIX -->`` (before a ``text`` block)
      the block is the output of the last command run that starts with PREFIX.

- ``<!-- docs-test: write PATH`` ... ``-->`` writes the lines between into PATH in the working
  copy before the page's next command (a file a command needs that the page does not show).

Any other fenced block (``text``, no language) that shows a ``mlkube`` command without a
``docs-test`` marker is reported as unmarked, so no command is left out silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

SHELL_LANGUAGES = frozenset({"sh", "bash", "shell"})
MARKER = re.compile(r"^<!--\s*docs-test:\s*(?P<body>.*?)\s*-->\s*$")
WRITE_START = re.compile(r"^<!--\s*docs-test:\s*write\s+(?P<path>\S+)\s*$")
FENCE = re.compile(r"^(?P<fence>```+)\s*(?P<lang>[\w-]*)")


@dataclass
class Command:
    """One shell command a page shows, with what the page says about its result."""

    page: str
    line: int
    text: str
    expected_exit: int = 0
    shown_output: list[str] = field(default_factory=list)
    interrupt_when: str | None = None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


@dataclass(frozen=True)
class Skipped:
    """A block the page marks as not runnable here, and why."""

    page: str
    line: int
    text: str
    reason: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


@dataclass(frozen=True)
class WriteFile:
    """A file to write into the working copy before the next command."""

    page: str
    line: int
    path: str
    content: str


@dataclass(frozen=True)
class ShownOutput:
    """A ``text`` block that shows the output of an earlier command (``output-of=PREFIX``)."""

    page: str
    line: int
    of: str
    lines: tuple[str, ...]


Step = Command | Skipped | WriteFile | ShownOutput


@dataclass
class Page:
    """What one markdown page asks the walk to do, in order, and its unmarked blocks."""

    path: str
    steps: list[Step] = field(default_factory=list)
    unmarked: list[str] = field(default_factory=list)

    @property
    def commands(self) -> list[Command]:
        return [s for s in self.steps if isinstance(s, Command)]

    @property
    def skipped(self) -> list[Skipped]:
        return [s for s in self.steps if isinstance(s, Skipped)]


@dataclass
class _Markers:
    skip: str | None = None
    exit: int = 0
    interrupt_when: str | None = None
    output_of: str | None = None

    def any(self) -> bool:
        return self != _Markers()


class DocSyntaxError(ValueError):
    """A ``docs-test`` marker the walk does not understand."""


def parse_page(text: str, name: str) -> Page:
    """The steps of one markdown page (``name`` is how reports call it)."""
    page = Page(name)
    lines = text.splitlines()
    markers = _Markers()
    index = 0
    while index < len(lines):
        line = lines[index]
        number = index + 1
        write = WRITE_START.match(line.strip())
        if write:
            end = _find(lines, index + 1, "-->", name, number)
            content = "\n".join(lines[index + 1 : end]) + "\n"
            page.steps.append(WriteFile(name, number, write["path"], content))
            index = end + 1
            continue
        marker = MARKER.match(line.strip())
        if marker:
            _read_marker(marker["body"], markers, name, number)
            index += 1
            continue
        fence = FENCE.match(line)
        if fence:
            end = _find(lines, index + 1, fence["fence"], name, number)
            _add_block(page, fence["lang"].lower(), lines[index + 1 : end], number, markers)
            markers = _Markers()
            index = end + 1
            continue
        if line.strip() and markers.any():  # prose after a marker: the marker was misplaced
            raise DocSyntaxError(f"{name}:{number}: a docs-test marker must precede a block")
        index += 1
    return page


def _find(lines: list[str], start: int, end: str, name: str, number: int) -> int:
    """The index of the first line from ``start`` that starts with ``end`` (stripped)."""
    for index in range(start, len(lines)):
        if lines[index].strip().startswith(end):
            return index
    raise DocSyntaxError(f"{name}:{number}: a block or marker that never ends")


def _read_marker(body: str, markers: _Markers, name: str, number: int) -> None:
    key, _, value = body.partition("=") if "=" in body.split(" ", 1)[0] else (body, "", "")
    if body.startswith("skip"):
        reason = body[len("skip") :].strip()
        reason = reason.removeprefix("reason=").strip().strip('"')
        markers.skip = reason or "no reason given"
    elif key == "exit":
        markers.exit = int(value)
    elif key == "interrupt-when":
        markers.interrupt_when = value.strip().strip('"')
    elif key == "output-of":
        markers.output_of = value.strip().strip('"')
    else:
        raise DocSyntaxError(f"{name}:{number}: unknown docs-test marker {body!r}")


def _add_block(page: Page, lang: str, body: list[str], line: int, markers: _Markers) -> None:
    first = line + 1  # the line of body[0]
    if markers.output_of is not None:
        shown = tuple(s for s in body if s.strip())
        page.steps.append(ShownOutput(page.path, line, markers.output_of, shown))
        return
    if lang == "console":
        commands = _console_commands(page.path, body, first)
    elif lang in SHELL_LANGUAGES:
        commands = _shell_commands(page.path, body, first)
    else:
        if any(_looks_like_a_command(s) for s in body) and not markers.any():
            page.unmarked.append(f"{page.path}:{line}")
        if markers.skip is not None:
            page.steps.append(Skipped(page.path, line, "\n".join(body), markers.skip))
        return
    if markers.skip is not None:
        text = "\n".join(c.text for c in commands)
        page.steps.append(Skipped(page.path, line, text, markers.skip))
        return
    for command in commands:
        command.expected_exit = markers.exit
        command.interrupt_when = markers.interrupt_when
        page.steps.append(command)


def _looks_like_a_command(line: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(("mlkube ", "$ ", "./scripts/"))


def _console_commands(page: str, body: list[str], first: int) -> list[Command]:
    commands: list[Command] = []
    for offset, line in enumerate(body):
        if line.startswith("$ "):
            commands.append(Command(page, first + offset, line[2:].strip()))
        elif commands and line.strip():
            commands[-1].shown_output.append(line)
    return commands


def _shell_commands(page: str, body: list[str], first: int) -> list[Command]:
    commands: list[Command] = []
    pending: list[str] = []
    start = first
    for offset, line in enumerate(body):
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if not pending:
            start = first + offset
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].rstrip())
            continue
        pending.append(stripped)
        commands.append(Command(page, start, " ".join(pending)))
        pending = []
    if pending:
        commands.append(Command(page, start, " ".join(pending)))
    return commands


def output_matches(shown: list[str] | tuple[str, ...], actual: str) -> list[str]:
    """The shown lines missing from ``actual``, in order (``...`` stands for anything)."""
    actual_lines = [line.strip() for line in actual.splitlines()]
    missing = []
    position = 0
    for line in shown:
        pattern = _line_pattern(line.strip())
        for index in range(position, len(actual_lines)):
            if pattern.fullmatch(actual_lines[index]):
                position = index + 1
                break
        else:
            missing.append(line.strip())
    return missing


def _line_pattern(line: str) -> re.Pattern[str]:
    parts = [r"\s+".join(map(re.escape, piece.split())) for piece in line.split("...")]
    return re.compile(".*".join(parts))


def pages(root: Path) -> list[Path]:
    """README.md and every docs page, in a stable order."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]
