"""A real HTTP server on 127.0.0.1 that plays an Alertmanager webhook receiver in tests.

It keeps every JSON body POSTed to it and answers 200, which is all Alertmanager asks of a
receiver: https://prometheus.io/docs/alerting/latest/configuration/#webhook_config (the body
is the version "4" message: status, receiver, groupLabels, alerts[] with labels, annotations).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

POLL_S = 0.02
"""How often the server thread checks for shutdown (socketserver's default is 0.5 s, which
every ``shutdown()`` -- every test's teardown -- waited out)."""


class WebhookReceiver:
    """``with WebhookReceiver() as hook``: ``hook.url``, ``hook.messages``, ``hook.alerts()``."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.paths: list[str] = []
        lock = threading.Lock()
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the name http.server calls
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with lock:
                    received.messages.append(json.loads(body))
                    received.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return  # quiet: pytest shows the assertions, not an access log

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL_S},  # shutdown() waits one poll
            daemon=True,
        )
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/alerts"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def alerts(self, status: str = "firing") -> list[dict[str, Any]]:
        """Every alert received with ``status``, in arrival order."""
        return [
            alert
            for message in list(self.messages)
            for alert in message.get("alerts", ())
            if alert.get("status") == status
        ]
