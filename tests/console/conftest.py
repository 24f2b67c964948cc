"""A real `mlkube up` controller and Debian's Chromium driven by Playwright, per test.

The controller runs a small Python model (``MODEL``: 50 ms a row, so a few clients keep it
busy) with a concurrency autoscaler; periods are shrunk through the controller's MLKUBE_*
settings. The browser is /usr/bin/chromium (apt package ``chromium``, installed by
scripts/setup); Playwright never downloads one. Screenshots go to ``artefacts``, a folder
under pytest's tmp dir (or $MLKUBE_CONSOLE_ARTEFACTS), named in the test output.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.sync_api import Browser, Page, sync_playwright

from mlkube.backends.local.ports import free_port
from mlkube.testing.local import LoadClient, LocalController

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FAST = {
    "MLKUBE_RECONCILE_PERIOD_S": "0.1",
    "MLKUBE_PROBE_PERIOD_S": "0.2",
    "MLKUBE_METRICS_PERIOD_S": "0.5",
    "MLKUBE_BACKOFF_BASE_S": "0.5",
    "MLKUBE_BACKOFF_MAX_S": "2",
    "MLKUBE_STOP_GRACE_S": "2",
}
ROW = [5.1, 3.5, 1.4, 0.2]
MODEL = """
import time

import numpy as np


class Model:
    inputs = [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    outputs = [{"name": "label", "datatype": "INT64", "shape": [-1]}]

    def load(self):
        pass

    def predict(self, batch):
        time.sleep(0.05 * len(batch["input"]))
        return {"label": np.zeros(len(batch["input"]), dtype=np.int64)}
"""
LINK = re.compile(r"http://127\.0\.0\.1:\d+/console/#code=[\w-]+")


AUTOSCALING = {
    "minReplicas": 1,
    "maxReplicas": 3,
    "metrics": [{"type": "concurrency", "target": 2}],
    "syncPeriod": "1s",
    "stableWindow": "6s",
}


def write_spec(
    folder: Path, name: str, port: int, model: str = MODEL, model_dir: str = "model", **spec: Any
) -> Path:
    """A ModelDeployment of ``model`` on ``port``; by default with a concurrency autoscaler
    (1-3 replicas). ``model_dir`` names its folder: a new folder is a new revision."""
    folder = folder.resolve()
    source = folder / model_dir
    source.mkdir(exist_ok=True)
    (source / "test_model.py").write_text(model)
    sections: dict[str, Any] = {"autoscaling": AUTOSCALING, **spec}
    document = {
        "apiVersion": "mlkube.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": str(source), "format": "python", "entrypoint": "test_model:Model"},
            "service": {"port": port},
            "server": {"drainTimeout": "5s"},
            "batching": {"maxBatchSize": 1, "maxLatencyMs": 0},
            "resources": {
                "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"cpu": "1", "memory": "1Gi"},
            },
            **{k: v for k, v in sections.items() if v is not None},
        },
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


class Platform(LocalController):
    """The controller of one test and the deployment ``conc`` it runs."""

    name = "conc"

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp / "state", FAST)
        self.tmp = tmp
        self.port = free_port()

    def start(self, **spec: Any) -> Path:
        """``mlkube up`` of ``write_spec(**spec)``; waits for its replicas to be ready."""
        path = write_spec(self.tmp, self.name, self.port, **spec)
        self.run("up", "-d", str(path))
        count = int(spec.get("replicas", 1))
        self.wait(
            f"{count} ready replicas", lambda: self.deployment(self.name)["ready"] == count, 90
        )
        return path

    def login_link(self) -> str:
        """What `mlkube console` prints: a one-time link."""
        out = self.run("console").stdout
        found = LINK.search(out)
        assert found is not None, out
        return found.group(0)

    def load(self, workers: int) -> LoadClient:
        return LoadClient(self.port, self.name, workers, 0.0, max_s=120.0, row=ROW)


@pytest.fixture
def stopped_platform(tmp_path: Path) -> Iterator[Platform]:
    """A platform the test starts itself (``start(**spec)``); cleaned up after it."""
    made = Platform(tmp_path)
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture
def platform(stopped_platform: Platform) -> Platform:
    """A running platform: ``conc`` with its autoscaler, one ready replica."""
    stopped_platform.start()
    return stopped_platform


@pytest.fixture
def artefacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("MLKUBE_CONSOLE_ARTEFACTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"console screenshots in {folder}")
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium under Playwright; the test skips only when it is not installed.

    One browser per module: each test gets its own context (``page``: no cookies, storage or
    cache shared), so only the ~0.7 s of starting Playwright and Chromium is saved."""
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (scripts/setup installs the Debian package)")
    with sync_playwright() as driver:
        launched = driver.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    try:
        yield opened
    finally:
        context.close()
