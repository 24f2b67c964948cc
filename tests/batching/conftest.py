"""The bench/ modules these tests read, loaded by path (bench/ is scripts, not a package)."""

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench_module(name: str) -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def serve() -> Iterator[ModuleType]:
    yield from _bench_module("serve")


@pytest.fixture(scope="module")
def paired() -> Iterator[ModuleType]:
    yield from _bench_module("paired")


@pytest.fixture(scope="module")
def readme_table() -> Iterator[ModuleType]:
    yield from _bench_module("readme_table")
