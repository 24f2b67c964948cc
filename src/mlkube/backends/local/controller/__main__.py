"""``python -m mlkube.backends.local.controller --state-dir DIR``: the controller process.

``mlkube up`` starts it when none runs for the state directory.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

from mlkube.backends.local.controller.app import run
from mlkube.backends.local.controller.settings import ControllerSettings, state_dir
from mlkube.backends.local.private import PRIVATE_UMASK


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m mlkube.backends.local.controller")
    parser.add_argument("--state-dir", default=None)
    args = parser.parse_args()
    os.umask(PRIVATE_UMASK)  # logs, specs, the database: readable by this user only
    logging.basicConfig(
        level=logging.INFO,
        format='{"ts": "%(asctime)s", "level": "%(levelname)s", "logger": "%(name)s", '
        '"msg": "%(message)s"}',
    )
    try:
        settings = ControllerSettings.from_env()
    except ValueError as error:  # a malformed MLKUBE_* variable: one line, no traceback
        parser.exit(2, f"error: {error}\n")
    coro = run(state_dir(args.state_dir), settings)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(coro)
    else:
        uvloop.run(coro)


if __name__ == "__main__":
    main()
