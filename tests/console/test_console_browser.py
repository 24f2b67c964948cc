"""The web console in a real browser (Debian's Chromium under Playwright) against a real
`mlkube up`: sign-in by one-time link, the overview, a confirmed scale, live charts with the
autoscaler's decisions, the simulate page, and accessibility basics. Each page's screenshot
is saved in ``artefacts``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Page, expect

from .conftest import Platform

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

NAMED_ROLES = ("button", "link", "textbox", "spinbutton", "combobox", "checkbox")


def sign_in(page: Page, platform: Platform, path: str = "") -> str:
    link = platform.login_link()
    page.goto(link.replace("/console/#", f"/console/{path}#"))
    return link


def test_the_overview_lists_the_deployment_and_the_link_works_once(
    platform: Platform, page: Page, artefacts: Path
) -> None:
    link = sign_in(page, platform)
    row = page.locator("#deployments tbody tr", has_text="default/conc")
    expect(row).to_be_visible()
    expect(row).to_contain_text("1/1")
    expect(row).to_contain_text("healthy")
    assert "code=" not in page.url  # the page dropped the one-time code from the address bar
    page.screenshot(path=artefacts / "overview.png", full_page=True)
    # The link is spent: another browser (no cookie) that opens it is asked to sign in.
    other = page.context.browser.new_context()  # type: ignore[union-attr]
    try:
        second = other.new_page()
        second.goto(link)
        expect(second.locator("#signin")).to_be_visible()
        expect(second.locator("#signin-message")).to_contain_text("used or expired")
    finally:
        other.close()


def test_scaling_from_the_console_changes_the_replica_count(
    stopped_platform: Platform, page: Page, artefacts: Path
) -> None:
    platform = stopped_platform
    platform.start(autoscaling=None)  # no autoscaler to take the count back at its next sync
    sign_in(page, platform, "d/default/conc")
    expect(page.locator("#dep-replicas")).to_have_text("1 ready of 1")
    page.fill("#scale-to", "2")
    page.click("#scale")
    dialog = page.locator("#confirm")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("from 1 to 2 replicas")
    page.screenshot(path=artefacts / "scale-confirm.png")
    page.click("#confirm-cancel")  # cancelled: nothing changes
    expect(dialog).to_be_hidden()
    assert platform.deployment("conc")["desired"] == 1
    page.click("#scale")
    page.click("#confirm-ok")
    expect(page.locator("#action-result")).to_have_text("Scale: done")
    scaled = [
        e for e in platform.events("conc") if e["message"].startswith("scaled from 1 to 2: manual")
    ]
    assert scaled, platform.events("conc")
    # The page follows by its live stream.
    expect(page.locator("#dep-replicas")).to_have_text("2 ready of 2", timeout=60_000)
    expect(page.locator("#decisions")).to_contain_text("scaled from 1 to 2: manual")
    page.screenshot(path=artefacts / "deployment-scaled.png", full_page=True)


def test_under_load_the_charts_show_traffic_and_an_autoscaler_decision(
    platform: Platform, page: Page, artefacts: Path
) -> None:
    sign_in(page, platform, "d/default/conc")
    expect(page.locator("#chart-traffic canvas")).to_have_count(1)
    with platform.load(workers=8):
        platform.wait(
            "the autoscaler to scale up", lambda: platform.deployment("conc")["desired"] > 1, 60
        )
        decision = page.locator("#decisions li", has_text="AutoscalerDecision")
        expect(decision.first).to_contain_text("concurrency", timeout=30_000)
        page.wait_for_function("() => dep.rows.some((r) => r[1] > 1)", timeout=30_000)
        markers = page.evaluate(
            "() => dep.markers.filter((m) => m.reason === 'AutoscalerDecision').length"
        )
        assert markers >= 1
        rates = page.evaluate("() => dep.rows.map((r) => r[1])")
        assert max(rates) > 1.0, rates
        expect(page.locator("#logs")).to_contain_text("[conc-")
        page.screenshot(path=artefacts / "deployment-under-load.png", full_page=True)


def test_the_simulate_page_runs_the_simulator_and_plots_it(
    platform: Platform, page: Page, artefacts: Path
) -> None:
    sign_in(page, platform, "simulate")
    expect(page.locator("#sim-name option")).to_have_text(["default/conc"])
    page.select_option("#sim-trace", "spike")
    page.click("#sim-run")
    expect(page.locator("#sim-status")).to_have_text("Done: 2 policies.", timeout=60_000)
    rows = page.locator("#sim-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("mlkube")
    expect(page.locator("#sim-replicas canvas")).to_have_count(1)
    page.screenshot(path=artefacts / "simulate.png", full_page=True)


CONTRAST = """() => {
  const parse = (c) => c.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (node) => {
    for (; node; node = node.parentElement) {
      const c = parse(getComputedStyle(node).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const worst = [];
  for (const node of document.querySelectorAll("body *")) {
    const direct = [...node.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!direct || node.closest("[hidden]") || node.offsetParent === null) continue;
    const fg = lum(parse(getComputedStyle(node).color));
    const bg = lum(background(node));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    if (ratio < 4.5) worst.push(`${node.tagName}#${node.id}: ${ratio.toFixed(2)}`);
  }
  return worst;
}"""


def unnamed(page: Page) -> list[str]:
    """Controls in the accessibility tree without an accessible name."""
    tree = page.locator("body").aria_snapshot()
    found = []
    for line in tree.splitlines():
        role = line.strip().removeprefix("- ").split(" ")[0].rstrip(":")
        if role in NAMED_ROLES and '"' not in line:
            found.append(line.strip())
    return found


def test_accessibility_names_contrast_and_keyboard(
    platform: Platform, page: Page, artefacts: Path
) -> None:
    sign_in(page, platform, "d/default/conc")
    expect(page.locator("#dep-replicas")).to_have_text("1 ready of 1")
    assert unnamed(page) == []
    assert page.evaluate(CONTRAST) == []
    # Keyboard: Tab reaches the scale button, Enter opens the confirmation with focus in it,
    # Escape closes it without acting.
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id") == "scale":
            break
    else:
        pytest.fail("Tab never reached the Scale button")
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    page.keyboard.press("Enter")
    expect(page.locator("#confirm")).to_be_visible()
    assert page.evaluate("() => document.activeElement.id") == "confirm-cancel"
    page.keyboard.press("Escape")
    expect(page.locator("#confirm")).to_be_hidden()
    assert platform.deployment("conc")["desired"] == 1
    page.goto(page.url.split("/console/")[0] + "/console/simulate")
    expect(page.locator("#sim-name option")).to_have_count(1)
    assert unnamed(page) == []
    assert page.evaluate(CONTRAST) == []
    page.goto(page.url.split("/console/")[0] + "/console/")
    expect(page.locator("#deployments tbody tr")).to_have_count(1)
    assert unnamed(page) == []
    assert page.evaluate(CONTRAST) == []


SLEEPY_JOB = Path(__file__).resolve().parents[1] / "backends" / "local" / "data" / "sleepy_job.py"


def test_a_job_is_cancelled_from_the_overview(
    platform: Platform, page: Page, artefacts: Path, tmp_path: Path
) -> None:
    job = tmp_path / "sleepy.yaml"
    job.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "mlkube.dev/v1alpha1",
                "kind": "TrainingJob",
                "metadata": {"name": "sleepy"},
                "spec": {
                    "run": {"script": str(SLEEPY_JOB)},
                    "env": {"JOB_SECONDS": "120"},
                    "output": {"path": str(tmp_path / "out")},
                    "terminationGracePeriod": "5s",
                },
            }
        )
    )
    platform.run("run", str(job))
    sign_in(page, platform)
    row = page.locator("#jobs tbody tr", has_text="default/sleepy")
    expect(row).to_contain_text("Running", timeout=60_000)
    page.screenshot(path=artefacts / "overview-with-job.png", full_page=True)
    row.get_by_role("button", name="Cancel job default/sleepy").click()
    expect(page.locator("#confirm")).to_contain_text("Cancel job default/sleepy?")
    page.click("#confirm-ok")
    expect(page.locator("#job-result")).to_contain_text("Cancel job default/sleepy")
    expect(row.locator("td").nth(2)).to_have_text("Cancelled", timeout=30_000)
    expect(row.get_by_role("button")).to_have_count(0)  # nothing left to cancel
    platform.wait(
        "the job to be cancelled",
        lambda: '"phase": "Cancelled"' in platform.run("jobs", "sleepy", "-o", "json").stdout,
    )
