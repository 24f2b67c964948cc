"""The controller settings the docs list (``MLKUBE_*`` and their defaults) are the real ones."""

from __future__ import annotations

import re
from dataclasses import MISSING, fields

from mlkube.backends.local.controller.settings import ControllerSettings
from mlkube.spec.quantity import parse_quantity

from .doc_commands import pages
from .walk import REPO

# `MLKUBE_HOLD_S` (10) in the settings list, `MLKUBE_HOLD_S`, 10 s in prose
DOCUMENTED = re.compile(r"`MLKUBE_([A-Z_]+)`(?: \(|, )([0-9.]+(?:Mi|Gi)?)")


def documented() -> list[tuple[str, str, str]]:
    found: list[tuple[str, str, str]] = []
    for path in pages(REPO):
        text = " ".join(path.read_text().split())  # a value may sit on the next line
        found.extend((path.name, *match) for match in DOCUMENTED.findall(text))
    return found


def defaults() -> dict[str, float | str]:
    return {
        f.name.upper(): f.default if isinstance(f.default, str) else float(f.default)
        for f in fields(ControllerSettings)
        if f.default is not MISSING
    }


def same(documented_value: str, default: float | str) -> bool:
    if isinstance(default, str):  # an address, documented as it is
        return documented_value == default
    return float(parse_quantity(documented_value)) == default


def test_every_documented_default_is_the_settings_default():
    known = defaults()
    found = documented()
    assert len(found) >= len(known)
    wrong = [
        f"{page}: MLKUBE_{name} documented as {value}, default {known[name]}"
        for page, name, value in found
        if name in known and not same(value, known[name])
    ]
    assert wrong == []


def test_every_setting_is_documented():
    named = {name for _, name, _ in documented()}
    assert sorted(set(defaults()) - named) == []
