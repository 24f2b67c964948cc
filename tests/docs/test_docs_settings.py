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


def defaults() -> dict[str, float]:
    return {
        f.name.upper(): float(f.default)
        for f in fields(ControllerSettings)
        if f.default is not MISSING
    }


def test_every_documented_default_is_the_settings_default():
    known = defaults()
    found = documented()
    assert len(found) >= len(known)
    wrong = [
        f"{page}: MLKUBE_{name} documented as {value}, default {known[name]:g}"
        for page, name, value in found
        if name in known and float(parse_quantity(value)) != known[name]
    ]
    assert wrong == []


def test_every_setting_is_documented():
    named = {name for _, name, _ in documented()}
    assert sorted(set(defaults()) - named) == []
