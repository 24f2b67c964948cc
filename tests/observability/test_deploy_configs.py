"""deploy/alertmanager checked by amtool (config and routing); deploy/logging parsed, and the
Fluent Bit parsers run (as Python regex / strptime) on real mlkube log lines.

fluent-bit, vector and promtail are not installable here (no Debian package), so their
configs are checked for structure, not by the tools themselves.
"""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from mlkube.observability.logging import AccessLog, JsonFormatter

from .conftest import tool

DEPLOY = Path(__file__).parents[2] / "deploy"
ALERTMANAGER = sorted((DEPLOY / "alertmanager").glob("*.yml"))


@pytest.mark.integration  # runs a Prometheus tool
@pytest.mark.parametrize("path", ALERTMANAGER, ids=[p.name for p in ALERTMANAGER])
def test_amtool_check_config(path):
    result = subprocess.run(
        [tool("amtool"), "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.integration  # runs a Prometheus tool
@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (
            ["alertname=MlkubeHighErrorRate", "severity=critical", "team=ml"],
            "pagerduty-ml,email-ml-team,slack-ml",
        ),
        (["alertname=MlkubeCrashLooping", "severity=critical"], "pagerduty-ml,slack-ml"),
        (["alertname=MlkubeNoTraffic", "severity=warning"], "slack-ml"),
        (
            ["alertname=MlkubeHighLatencyP99", "severity=warning", "team=ml"],
            "email-ml-team,slack-ml",
        ),
    ],
)
def test_amtool_routes_alerts_to_the_right_receivers(labels, receivers):
    result = subprocess.run(
        [
            tool("amtool"),
            "config",
            "routes",
            "test",
            f"--config.file={DEPLOY / 'alertmanager' / 'alertmanager.yml'}",
            *labels,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout.strip() == receivers, result.stdout + result.stderr


def fluent_bit_sections(path: Path) -> list[tuple[str, dict[str, list[str]]]]:
    """The classic Fluent Bit format: [SECTION] headers, then `Key Value` lines."""
    sections: list[tuple[str, dict[str, list[str]]]] = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = re.fullmatch(r"\[([A-Z]+)\]", line)
        if header:
            sections.append((header.group(1), {}))
            continue
        assert sections, f"{path.name}: key before any section: {line}"
        key, _, value = line.partition(" ")
        assert value.strip(), f"{path.name}: key without value: {line}"
        sections[-1][1].setdefault(key.lower(), []).append(value.strip())
    return sections


def parser(name: str) -> dict[str, str]:
    for kind, keys in fluent_bit_sections(DEPLOY / "logging" / "parsers.conf"):
        if kind == "PARSER" and keys["name"] == [name]:
            return {k: v[0] for k, v in keys.items()}
    raise AssertionError(f"no parser {name}")


def strptime_format(fluent: str) -> str:
    # Fluent Bit's %L is fractional seconds; Python's %f reads them.
    return fluent.replace("%L", "%f")


def real_lines() -> list[str]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter({"deployment": "iris", "revision": "1", "replica": "r0"}))
    logger = logging.getLogger("mlkube.test.fluent")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.info("model ready", extra={"load_seconds": 0.1})
    finally:
        logger.removeHandler(handler)
    access = io.BytesIO()
    log = AccessLog(access, context={"deployment": "iris"})
    log.write(epoch_s=1795723200.25, fields={"status": 200, "request_id": "abc"})
    log.flush()
    return [stream.getvalue().strip(), access.getvalue().decode().strip()]


def test_fluent_bit_config_structure():
    sections = fluent_bit_sections(DEPLOY / "logging" / "fluent-bit.conf")
    kinds = [kind for kind, _ in sections]
    assert kinds[0] == "SERVICE" and "INPUT" in kinds and kinds.count("OUTPUT") == 2
    service = sections[0][1]
    assert service["parsers_file"] == ["parsers.conf"]
    filters = {keys["name"][0]: keys for kind, keys in sections if kind == "FILTER"}
    assert filters["kubernetes"]["merge_parser"] == ["mlkube_json"]
    assert filters["kubernetes"]["merge_log"] == ["On"]
    outputs = {keys["name"][0] for kind, keys in sections if kind == "OUTPUT"}
    assert outputs == {"es", "loki"}
    for kind, keys in sections:
        assert "name" in keys or kind == "SERVICE", (kind, keys)


def test_the_json_parser_reads_mlkube_lines_and_their_time():
    spec = parser("mlkube_json")
    assert spec["format"] == "json" and spec["time_key"] == "ts"
    for line in real_lines():
        record = json.loads(line)
        # The format's literal Z is UTC; strptime cannot read it as a zone.
        when = datetime.strptime(record[spec["time_key"]], strptime_format(spec["time_format"]))  # noqa: DTZ007
        assert when.year >= 2026
    access = json.loads(real_lines()[1])
    parsed = datetime.strptime(access["ts"], strptime_format(spec["time_format"]))  # noqa: DTZ007
    assert parsed.replace(tzinfo=UTC).timestamp() == 1795723200.25


def test_the_cri_parser_splits_a_containerd_line():
    spec = parser("cri")
    regex = re.compile(spec["regex"].replace("(?<", "(?P<"))  # Onigmo → Python group syntax
    mlkube_line = real_lines()[1]
    match = regex.match(f"2026-11-26T20:00:00.250000000+00:00 stdout F {mlkube_line}")
    assert match is not None
    assert json.loads(match.group("log"))["request_id"] == "abc"
    assert match.group("stream") == "stdout"


def test_vector_example_structure():
    config = yaml.safe_load((DEPLOY / "logging" / "vector.yaml").read_text())
    transform = config["transforms"]["mlkube"]
    assert set(transform["inputs"]) == set(config["sources"])
    assert "parse_json(.message)" in transform["source"] and ".ts" in transform["source"]
    assert {s["type"] for s in config["sinks"].values()} == {"loki", "elasticsearch"}
    assert all(s["inputs"] == ["mlkube"] for s in config["sinks"].values())


def test_promtail_example_structure():
    config = yaml.safe_load((DEPLOY / "logging" / "promtail.yaml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"mlkube-kubernetes", "mlkube-local"}
    for job in jobs.values():
        stages = [next(iter(stage)) for stage in job["pipeline_stages"]]
        assert stages[-3:] == ["json", "timestamp", "labels"]
        timestamp = job["pipeline_stages"][-2]["timestamp"]
        assert timestamp["source"] == "ts"
    # Loki labels stay bounded: never the request id.
    for job in jobs.values():
        assert "request_id" not in job["pipeline_stages"][-1]["labels"]
