"""``python -m mlkube.backends.local.balancer --state-dir DIR``: the balancer process.

The controller starts it when none runs for the state directory (``balancer.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from mlkube.backends.local.balancer.process import run


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m mlkube.backends.local.balancer")
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO,
        format='{"ts": "%(asctime)s", "level": "%(levelname)s", "logger": "%(name)s", '
        '"msg": "%(message)s"}',
    )
    coro = run(Path(args.state_dir))
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(coro)
    else:
        uvloop.run(coro)


if __name__ == "__main__":
    main()
