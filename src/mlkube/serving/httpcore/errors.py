"""THE wire error table: every refusal the replica server and the load balancer send themselves.

One body shape for both, ``{"error": "<message>"}`` (TF Serving REST and the Open Inference
Protocol agree on it; ``mlkube.serving.errors`` uses it for the model's own refusals too).
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus

import orjson

REASONS = {status.value: status.phrase for status in HTTPStatus}


class HttpError(Exception):
    """A request refused at the HTTP layer: a status and one readable line."""

    def __init__(self, status: int, message: str, *, retry_after_s: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def encode_error(
    error: HttpError, *, close: bool, headers: Iterable[tuple[str, str]] = ()
) -> bytes:
    """The bytes of a whole response for ``error``."""
    body = error_body(error.message)
    lines = [
        f"HTTP/1.1 {error.status} {REASONS.get(error.status, 'Unknown')}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
    ]
    if error.retry_after_s:
        lines.append(f"retry-after: {error.retry_after_s}\r\n")
    lines.extend(f"{name}: {value}\r\n" for name, value in headers)
    if close:
        lines.append("connection: close\r\n")
    lines.append("\r\n")
    return "".join(lines).encode() + body


# The table. Client mistakes are 4xx; what the balancer cannot get from a replica is 5xx.
def malformed(detail: str) -> HttpError:
    return HttpError(400, f"malformed HTTP request: {detail[:200]}")


def missing_host() -> HttpError:
    return HttpError(400, "an HTTP/1.1 request needs exactly one Host header")


def header_timeout(seconds: float) -> HttpError:
    return HttpError(408, f"request headers not received within {seconds:g} s")


def body_timeout(seconds: float) -> HttpError:
    return HttpError(408, f"request body stalled for {seconds:g} s")


def body_too_large(limit: int) -> HttpError:
    return HttpError(413, f"request body larger than the limit of {limit} bytes")


def url_too_long(limit: int) -> HttpError:
    return HttpError(414, f"URL longer than {limit} bytes")


def headers_too_large(limit: int) -> HttpError:
    return HttpError(431, f"headers larger than {limit} bytes")


def unsupported_coding(value: bytes) -> HttpError:
    coding = value.decode("latin-1")[:100]
    return HttpError(
        501, f"transfer coding {coding!r} is not supported; send chunked or Content-Length"
    )


def no_tunnels() -> HttpError:
    return HttpError(501, "CONNECT (tunnelling) is not supported")


def internal() -> HttpError:
    return HttpError(500, "internal server error")


def upstream_closed() -> HttpError:
    return HttpError(502, "the replica closed the connection before answering")


def no_replica_answered() -> HttpError:
    return HttpError(502, "no replica answered")


def no_ready_replica() -> HttpError:
    return HttpError(503, "no ready replica", retry_after_s=1)


def upstream_timeout(seconds: float) -> HttpError:
    return HttpError(504, f"the replica did not answer within {seconds:g} s")
