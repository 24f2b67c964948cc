"""The only place that prints: messages, tables and machine-readable output."""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml


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
