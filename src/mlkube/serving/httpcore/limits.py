"""How much a client may send, and how long it may take (one set for replica and balancer)."""

from __future__ import annotations

from dataclasses import dataclass

# Defaults close to nginx's (client_header_timeout, client_body_timeout, keepalive_timeout,
# lingering_time, lingering_timeout) and to its 8 KiB request-line limit.
MAX_URL_BYTES = 8192
MAX_HEADER_BYTES = 65536
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024  # the spec's server.maxRequestSize default


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Limits of one HTTP server; crossing any of them answers 408/413/414/431 at once."""

    max_url_bytes: int = MAX_URL_BYTES
    max_header_bytes: int = MAX_HEADER_BYTES
    """Header names and values together, of one request."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    header_timeout_s: float = 10.0
    """From the first byte of a request to the end of its headers."""
    body_timeout_s: float = 30.0
    """Longest silence while a request body is being received."""
    idle_timeout_s: float = 60.0
    """A keep-alive connection with nothing outstanding is closed after this."""
    linger_s: float = 30.0
    """After a refusal: at most this long discarding what the client still sends."""
    linger_idle_s: float = 2.0
    """...and the connection closes once the client sent nothing for this long."""
    linger_bytes: int = 256 * 1024 * 1024
    """...or once this much was discarded (a client that never stops)."""

    @property
    def sweep_every_s(self) -> float:
        """How often timeouts are checked: a fraction of the shortest one."""
        shortest = min(
            self.header_timeout_s, self.body_timeout_s, self.idle_timeout_s, self.linger_idle_s
        )
        return max(0.01, min(1.0, shortest / 4))
