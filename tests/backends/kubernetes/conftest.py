"""Shared helpers of the Kubernetes backend tests.

The suite runs with ``--import-mode=importlib``, where a test module cannot import a sibling
module by name; the helpers here (``k8s_validation``, ``k8s_crd_schemas``, ``k8s_apiserver``)
are made importable by putting this folder on ``sys.path`` once, before collection.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from k8s_apiserver import FakeApiServer  # noqa: E402 - importable once the folder is on sys.path


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApiServer]:
    """The API-server double, started, with ``KUBECONFIG`` pointing at it."""
    server = FakeApiServer()
    server.start()
    config = tmp_path / "kubeconfig"
    config.write_text(yaml.safe_dump(server.kubeconfig()), encoding="utf-8")
    monkeypatch.setenv("KUBECONFIG", str(config))
    yield server
    server.stop()
