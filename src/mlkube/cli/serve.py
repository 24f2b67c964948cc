"""``mlkube serve``: one replica in the foreground."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
