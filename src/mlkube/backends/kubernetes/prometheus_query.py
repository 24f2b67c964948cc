"""The canary's requests, 5xx share and p99 over a window, from a cluster's Prometheus.

The same series the canary alerts watch (``observability.alerts``): ``mlkube_requests_total``
and ``mlkube_request_duration_seconds_bucket`` of the deployment's pods with
``revision="canary"`` (the renderer passes ``--revision canary`` to the canary's server).
Queried with the HTTP API's instant query (``GET /api/v1/query``, documented at
https://prometheus.io/docs/prometheus/latest/querying/api/#instant-queries).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from mlkube.errors import BackendError
from mlkube.observability.alerts import duration
from mlkube.observability.promql import selector

TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class WindowRates:
    """What the canary served in one window."""

    requests: float
    error_rate: float
    p99_ms: float | None


def canary_queries(namespace: str, deployment: str, window_s: float) -> tuple[str, str, str]:
    """PromQL for (requests, 5xx requests, p99 seconds) of the canary in the window. Pure."""
    labels = {"namespace": namespace, "deployment": deployment, "revision": "canary"}
    window = duration(window_s)
    sel = selector(labels)
    failed = selector(labels, code='=~"5.."')
    return (
        f"sum(increase(mlkube_requests_total{{{sel}}}[{window}]))",
        f"sum(increase(mlkube_requests_total{{{failed}}}[{window}]))",
        "histogram_quantile(0.99, sum by (le) "
        f"(rate(mlkube_request_duration_seconds_bucket{{{sel}}}[{window}])))",
    )


class PrometheusCanary:
    """Measures a canary through the Prometheus HTTP API at ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def __call__(self, namespace: str, deployment: str, window_s: float) -> WindowRates | None:
        """The window's rates; None when Prometheus cannot be reached (the verdict waits)."""
        requests_q, errors_q, p99_q = canary_queries(namespace, deployment, window_s)
        try:
            with httpx.Client(timeout=TIMEOUT_S) as client:
                requests = self._scalar(client, requests_q) or 0.0
                errors = self._scalar(client, errors_q) or 0.0
                p99_s = self._scalar(client, p99_q)
        except httpx.TransportError:
            return None
        error_rate = errors / requests if requests > 0 else 0.0
        p99_ms = None if p99_s is None or p99_s != p99_s else p99_s * 1000.0
        return WindowRates(requests, error_rate, p99_ms)

    def _scalar(self, client: httpx.Client, query: str) -> float | None:
        response = client.get(f"{self.url}/api/v1/query", params={"query": query})
        try:
            body = response.json()
        except ValueError as error:
            raise BackendError(
                f"Prometheus at {self.url} answered {response.status_code} without JSON"
            ) from error
        if body.get("status") != "success":
            raise BackendError(
                f"Prometheus at {self.url} refused a query: {body.get('error', body)}"
            )
        result = body["data"]["result"]
        if not result:
            return None  # no series: no requests reached the canary in the window
        return float(result[0]["value"][1])
