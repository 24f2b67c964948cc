"""A tiny client of the Prometheus HTTP API for tests (query, targets, rules), with deadlines."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

NO_TLS = False
"""Prometheus listens on plain HTTP on loopback: no CA bundle to load (~20 ms a request)."""


class Prom:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        answer = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10, verify=NO_TLS)
        body = answer.json()
        assert body["status"] == "success", (expr, body)
        return list(body["data"]["result"])

    def scalar(self, expr: str, at: float | None = None) -> float | None:
        result = self.query(expr, at)
        if not result:
            return None
        assert len(result) == 1, (expr, result)
        return float(result[0]["value"][1])

    def targets(self) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.url}/api/v1/targets", timeout=10, verify=NO_TLS).json()
        return list(body["data"]["activeTargets"])

    def rules(self) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.url}/api/v1/rules", timeout=10, verify=NO_TLS).json()
        return list(body["data"]["groups"])


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})")
