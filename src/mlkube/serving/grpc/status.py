"""Refusals → gRPC status codes: the HTTP status of each ``ServingError`` read the way gRPC's
own HTTP mapping reads it (https://github.com/grpc/grpc/blob/master/doc/http-grpc-status-mapping.md),
so a request refused over REST with 4xx/5xx is refused over gRPC with the matching code."""

from __future__ import annotations

import grpc

from mlkube.errors import ServingError

_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    # Queue full: gRPC's mapping of 429, and what clients retry on.
    429: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_code(error: ServingError) -> grpc.StatusCode:
    """The gRPC code for a refusal (INTERNAL for a model failure or anything unmapped)."""
    return _CODES.get(error.status, grpc.StatusCode.INTERNAL)
