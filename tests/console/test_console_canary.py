"""Canaries in the console (real browser, real `mlkube up`): the traffic weights of a canary
step and a confirmed abort; a failing canary's automatic rollback as the page shows it."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .conftest import Platform, write_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

BAD_MODEL = """
import numpy as np


class Model:
    inputs = [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    outputs = [{"name": "label", "datatype": "INT64", "shape": [-1]}]

    def load(self):
        self.calls = 0

    def predict(self, batch):
        # Passes the server's warm-up call, then fails every request: a bad release.
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("this model fails after warm-up")
        return {"label": np.zeros(len(batch["input"]), dtype=np.int64)}
"""
CANARY = {"strategy": "Canary", "steps": [{"weight": 20, "pause": "60s"}]}
ANALYSED = {**CANARY, "analysis": {"maxErrorRate": 0.05, "interval": "1s", "minRequests": 10}}


def open_deployment(page: Page, platform: Platform) -> None:
    link = platform.login_link()
    page.goto(link.replace("/console/#", "/console/d/default/conc#"))
    expect(page.locator("#dep-replicas")).to_have_text("2 ready of 2")


def test_a_canary_step_shows_its_weights_and_is_aborted_from_the_console(
    stopped_platform: Platform, page: Page, artefacts: Path
) -> None:
    platform = stopped_platform
    spec = platform.start(replicas=2, autoscaling=None, rollout=CANARY)
    open_deployment(page, platform)
    expect(page.locator("#abort")).to_be_disabled()  # no canary yet
    write_spec(
        platform.tmp, "conc", platform.port, model_dir="model-v2",
        replicas=2, autoscaling=None, rollout=CANARY,
    )  # fmt: skip
    platform.run("apply", str(spec))
    weights = page.locator("#weights")
    expect(weights).to_contain_text("rev 2: 20", timeout=60_000)
    expect(weights).to_contain_text("rev 1: 80")
    expect(page.locator("#rollout-step")).to_contain_text("target revision 2")
    expect(page.locator("#abort")).to_be_enabled()
    page.screenshot(path=artefacts / "canary-step.png", full_page=True)
    page.click("#abort")
    expect(page.locator("#confirm")).to_contain_text("Abort the canary of default/conc")
    page.click("#confirm-ok")
    expect(page.locator("#action-result")).to_have_text("Abort canary: done")
    platform.wait(
        "the canary to be aborted",
        lambda: platform.deployment("conc")["rollout"]["phase"] != "Progressing",
    )
    phase = platform.deployment("conc")["rollout"]["phase"]
    expect(page.locator("#rollout-step")).to_contain_text(f"phase {phase}")
    expect(weights).to_contain_text("rev 1: 100")
    expect(page.locator("#abort")).to_be_disabled()


def test_a_failing_canary_shows_the_rollback(
    stopped_platform: Platform, page: Page, artefacts: Path
) -> None:
    platform = stopped_platform
    spec = platform.start(replicas=2, autoscaling=None, rollout=ANALYSED)
    open_deployment(page, platform)
    with platform.load(workers=4):
        write_spec(
            platform.tmp, "conc", platform.port, model=BAD_MODEL, model_dir="model-bad",
            replicas=2, autoscaling=None, rollout=ANALYSED,
        )  # fmt: skip
        platform.run("apply", str(spec))
        step = page.locator("#rollout-step")
        expect(step).to_contain_text("phase RolledBack", timeout=90_000)
        expect(page.locator("#events tbody")).to_contain_text("CanaryRolledBack")
        expect(page.locator("#events tbody")).to_contain_text("failed analysis: error rate")
        revisions = page.locator("#revisions tbody tr")
        expect(revisions).to_have_count(2)
        expect(revisions.nth(1)).to_contain_text("RolledBack")
        expect(page.locator("#decisions")).to_contain_text("CanaryRolledBack")
        expect(page.locator("#weights")).to_contain_text("rev 1: 100")
        page.wait_for_function("() => dep.rows.some((r) => r[2] > 0)", timeout=30_000)
        page.screenshot(path=artefacts / "canary-rolled-back.png", full_page=True)
