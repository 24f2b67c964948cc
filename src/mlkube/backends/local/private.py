"""Owner-only files and folders for the local backend's state.

The state directory holds request payloads (logs), events, specs and the API token: on a shared
machine no other local user may read them. The directory is ``0700`` (nothing under it can be
reached by others, whatever its own mode), and the files we create are ``0600`` besides, so a
copied or moved file stays private. ``PRIVATE_UMASK`` is set by the controller process, so
whatever it and its replicas create (logs, revision documents, Prometheus files) follows.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner can enter (created, or tightened when ours)."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _tighten(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """``path`` as a file only its owner can read (created empty when missing)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
    os.close(fd)
    _tighten(path, FILE_MODE)
    return path


def _tighten(path: Path, mode: int) -> None:
    # Only our own: a folder someone else made for us (e.g. a shared mount) is left as it is.
    info = path.stat()
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & ~mode:
        path.chmod(mode)
