"""THE error → HTTP table: one place that turns a refusal into a status and a body.

Both protocols use ``{"error": "<message>"}`` (TF Serving REST and the Open Inference Protocol
agree on it). The status comes from the error class (``mlkube.errors``), which knows nothing
of HTTP libraries; 429 and 503 carry ``Retry-After``.
"""

from __future__ import annotations

import math

from mlkube.errors import ServingError
from mlkube.serving.http import Response
from mlkube.serving.httpcore.errors import error_body


def error_response(status: int, message: str, protocol: str = "http") -> Response:
    """A body in the error shape of ``protocol`` (the same shape for v1, v2 and plain HTTP,
    and for the refusals of the HTTP core and the load balancer: ``httpcore.errors``)."""
    return Response(status, error_body(message))


def serving_error_response(error: ServingError, protocol: str) -> Response:
    """The response for a refused request."""
    response = error_response(error.status, error.message, protocol)
    if error.retry_after_s is not None or error.status in (429, 503):
        retry = error.retry_after_s if error.retry_after_s is not None else 1.0
        response.headers.append(("retry-after", str(max(1, math.ceil(retry)))))
    if error.status == 401:
        response.headers.append(("www-authenticate", 'Bearer realm="mlkube"'))
    if error.status == 405:
        allowed = "POST" if "use POST" in error.message else "GET, HEAD"
        response.headers.append(("allow", allowed))
    return response
