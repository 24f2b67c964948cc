"""Reading the replicas' log files under ``<state>/logs/<namespace>/<deployment>/``.

``history`` merges every replica's lines so far (rotated files included) in time order;
``read_new`` returns what a file gained since a position, for ``logs --follow``. Nothing here
prints: lines are returned for the CLI to show.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from mlkube.errors import BackendError
from mlkube.observability.logfiles import rotated_files
from mlkube.observability.logs import line_time, merge_log_lines


def choose_files(
    folder: Path, replicas: Sequence[str], name: str, replica: str | None, *, stderr: bool = False
) -> list[Path]:
    """The log files of ``replicas`` in ``folder``, or of the one ``replica`` names.

    ``replica`` is an index into ``replicas`` (``0``, ``1`` ...) or a replica name.
    """
    names = list(replicas)
    if replica is not None:
        if replica.isdigit():
            if int(replica) >= len(names):
                raise BackendError(
                    f"replica index {replica} is out of range: {len(names)} replicas"
                )
            names = [names[int(replica)]]
        elif replica in names:
            names = [replica]
        else:
            raise BackendError(f"no replica '{replica}' in '{name}' (replicas: {', '.join(names)})")
    # The JSON log (every line parses), or with ``stderr`` its stderr too (tracebacks, a model
    # that failed to load), labelled: on a cluster `kubectl logs` shows both streams.
    suffixes = (".log", ERR_SUFFIX) if stderr else (".log",)
    return [folder / f"{n}{suffix}" for n in names for suffix in suffixes]


def stopped_deployment_folder(state: Path, name: str) -> tuple[Path, list[str]]:
    """The log folder of a deployment no controller runs any more, and its replicas' names."""
    folders = sorted((state / "logs").glob(f"*/{name.split('/')[-1]}"))
    if not folders:
        raise BackendError(f"no logs for deployment '{name}' in {state / 'logs'}")
    return folders[0], sorted(p.stem for p in folders[0].glob("*.log"))


def history(files: Sequence[Path], cutoff: float | None) -> tuple[list[str], dict[Path, int]]:
    """Every replica's lines so far, rotated files included, merged in time order.

    Returns the lines (those at or after ``cutoff`` when given) and how far each live file was
    read, where ``--follow`` goes on from.
    """
    positions = {file: size(file) for file in files}
    streams = {file.name: _labelled(file, _lines_until(file, positions[file])) for file in files}
    lines = [line.text for line in merge_log_lines(streams) if cutoff is None or line.ts >= cutoff]
    return lines, positions


def read_new(file: Path, position: int, cutoff: float | None) -> tuple[list[str], int]:
    """The whole lines appended to ``file`` since ``position``, and the new position."""
    if size(file) < position:
        position = 0  # rotated (copied to .1 and truncated): the file starts again
    try:
        with open(file, "rb") as handle:
            handle.seek(position)
            data = handle.read()
    except OSError:
        return [], position
    end = data.rfind(b"\n") + 1
    lines = []
    for line in _labelled(file, data[:end].decode(errors="replace").splitlines()):
        ts = line_time(line)
        if cutoff is not None and ts is not None and ts < cutoff:
            continue
        lines.append(line)
    return lines, position + end


ERR_SUFFIX = ".err"
"""A replica's stderr, beside its ``.log`` (the controller's ``err_path``)."""


def _labelled(file: Path, lines: Iterable[str]) -> Iterator[str]:
    """Stderr lines carry no timestamp or replica name: say whose they are."""
    if file.suffix != ERR_SUFFIX:
        yield from lines
        return
    for line in lines:
        if line.strip():
            yield f"[{file.stem} stderr] {line.rstrip()}"


def size(file: Path) -> int:
    """The file's size in bytes; 0 when it is not there (yet)."""
    try:
        return file.stat().st_size
    except OSError:
        return 0


def _lines_until(file: Path, limit: int) -> Iterator[str]:
    """The lines of ``file``'s rotated files, then of ``file`` up to byte ``limit``."""
    for older in rotated_files(file):
        if older == file:
            break
        try:
            with open(older, encoding="utf-8", errors="replace") as lines:
                yield from lines
        except OSError:  # rotated away while we read: its lines moved to the next backup
            continue
    try:
        with open(file, "rb") as handle:
            data = handle.read(limit)
    except OSError:
        return
    end = data.rfind(b"\n") + 1
    yield from data[:end].decode(errors="replace").splitlines()
