"""The docs walk lists every block a page marks as not runnable at the end of the run."""

from __future__ import annotations

from typing import Any

SKIPPED_PROPERTY = "docs_skipped"
"""The ``record_property`` name under which a walk reports the blocks it did not run."""


def pytest_terminal_summary(terminalreporter: Any) -> None:
    blocks: list[str] = []
    for reports in terminalreporter.stats.values():
        for report in reports:
            for key, value in getattr(report, "user_properties", ()):
                if key == SKIPPED_PROPERTY and getattr(report, "when", "") == "call":
                    blocks.extend(value)
    if not blocks:
        return
    terminalreporter.section(f"docs walk: {len(blocks)} blocks not run (marked skip)")
    for line in blocks:
        terminalreporter.write_line(line)
