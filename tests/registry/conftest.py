"""Every registry test picks its registry itself (a tmp state dir), never the user's."""

import pytest


@pytest.fixture(autouse=True)
def _no_registry_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLKUBE_REGISTRY", raising=False)
