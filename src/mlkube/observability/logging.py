"""JSON log lines for every process, and the fast per-request access log of a replica.

Schema (one JSON object per line; docs/logging.md): ``ts`` (RFC 3339, UTC, milliseconds),
``level``, ``msg``, ``logger``, and when known ``deployment``, ``revision``, ``replica``,
``request_id``, ``trace_id``; access lines add ``method``, ``path``, ``status``,
``duration_ms``, ``protocol``, ``model``. Ordinary logs go through stdlib ``logging`` with
``JsonFormatter``; access lines bypass it (``AccessLog``) because at thousands of requests per
second the logging machinery would cost more than the prediction.
"""

from __future__ import annotations

import logging
import random
import sys
from datetime import UTC, datetime
from typing import IO, Any

import orjson

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def format_timestamp(epoch_s: float) -> str:
    """RFC 3339 in UTC with milliseconds, e.g. ``2026-11-26T20:51:20.123Z``."""
    stamp = datetime.fromtimestamp(epoch_s, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with fixed context fields and ``extra=`` fields."""

    def __init__(self, context: dict[str, str] | None = None) -> None:
        super().__init__()
        self.context = dict(context or {})

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": format_timestamp(record.created),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
            "logger": record.name,
            **self.context,
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure_logging(
    *,
    fmt: str = "json",
    level: str = "info",
    context: dict[str, str] | None = None,
    stream: IO[str] | None = None,
) -> None:
    """Set up the root logger once per process: JSON lines (default) or text."""
    handler = logging.StreamHandler(stream or sys.stdout)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(context))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class AccessLog:
    """Per-request JSON lines, sampled, buffered, flushed by the server's periodic tick.

    Errors (status >= 500) are always logged whatever the sample rate.
    """

    def __init__(
        self,
        stream: IO[bytes],
        *,
        context: dict[str, str],
        sample_rate: float = 1.0,
        enabled: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        self._stream = stream
        self._context = context
        self._sample_rate = sample_rate
        self._enabled = enabled
        self._rng = rng or random.Random()  # noqa: S311 - sampling, not security
        self._buffer: list[bytes] = []
        self._second = -1
        self._second_text = ""

    def _timestamp(self, epoch_s: float) -> str:
        second = int(epoch_s)
        if second != self._second:
            self._second = second
            self._second_text = datetime.fromtimestamp(second, tz=UTC).strftime(
                "%Y-%m-%dT%H:%M:%S."
            )
        return f"{self._second_text}{int((epoch_s - second) * 1000):03d}Z"

    def wants(self, status: int) -> bool:
        if not self._enabled:
            return False
        return status >= 500 or self._sample_rate >= 1.0 or self._rng.random() < self._sample_rate

    def write(self, *, epoch_s: float, fields: dict[str, Any]) -> None:
        line = {"ts": self._timestamp(epoch_s), "level": "info", "msg": "request"}
        line.update(self._context)
        line.update(fields)
        self._buffer.append(orjson.dumps(line, default=str) + b"\n")
        if len(self._buffer) >= 512:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        data = b"".join(self._buffer)
        self._buffer.clear()
        try:
            self._stream.write(data)
            self._stream.flush()
        except (BrokenPipeError, ValueError):
            # stdout closed by whoever reads us: losing access lines must not stop serving.
            self._enabled = False


# payload logging -----------------------------------------------------------------------------
REDACTED = "[REDACTED]"


def redact(value: Any, fields: frozenset[str]) -> Any:
    """``value`` with the values of keys named in ``fields`` replaced by "[REDACTED]".

    Pure. Keys match case-insensitively (``fields`` holds lower-case names), at any depth of
    objects and arrays; ``value`` itself is not changed.
    """
    if isinstance(value, dict):
        return {
            key: REDACTED if str(key).lower() in fields else redact(item, fields)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item, fields) for item in value]
    return value


class PayloadLog:
    """Request and response bodies as sampled, redacted ``payload`` lines. Off by default.

    Lines go through the replica's ``AccessLog`` (same buffer, same flush tick, same context
    fields) with ``msg: "payload"`` and the request id, so they join the access line of the same
    request. A JSON body is logged as JSON after redaction; other bodies as text, unless fields
    are to be redacted: a body that does not parse cannot be searched for them (a JSON body cut
    short still holds ``"ssn": ...``), so it is dropped: ``"[REDACTED]"`` and
    ``*_unparsed_bytes``. Bodies longer than ``max_bytes`` (after redaction) are cut and marked
    ``*_truncated: true``.

    The server calls, for prediction routes only, once the response is known::

        if payload_log is not None and payload_log.wants():
            payload_log.write(epoch_s=clock.wall(), request_id=request_id, path=request.path,
                              status=response.status, request_body=request.body,
                              response_body=response.body)
    """

    def __init__(
        self,
        access_log: AccessLog,
        *,
        sample_rate: float,
        redact_fields: tuple[str, ...] | frozenset[str] = (),
        max_bytes: int = 4096,
        rng: random.Random | None = None,
    ) -> None:
        self._access_log = access_log
        self._sample_rate = sample_rate
        self._fields = frozenset(f.lower() for f in redact_fields)
        self._max_bytes = max_bytes
        self._rng = rng or random.Random()  # noqa: S311 - sampling, not security

    @classmethod
    def from_spec(cls, requests: Any, access_log: AccessLog) -> PayloadLog | None:
        """The payload log a ``RequestLoggingSpec`` asks for; None when payloads are off."""
        if not requests.payloads or requests.payload_sample_rate <= 0:
            return None
        return cls(
            access_log,
            sample_rate=requests.payload_sample_rate,
            redact_fields=tuple(requests.redact_fields),
            max_bytes=requests.max_payload_bytes,
        )

    def wants(self) -> bool:
        """Whether this request's bodies are logged (decide before doing any work)."""
        return self._sample_rate >= 1.0 or self._rng.random() < self._sample_rate

    def body_fields(self, name: str, body: bytes) -> dict[str, Any]:
        """``{name: <redacted JSON or text>}`` plus ``{name}_truncated`` when cut. Pure."""
        try:
            parsed: Any = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            if self._fields:
                return {name: REDACTED, f"{name}_unparsed_bytes": len(body)}
            text = body[: self._max_bytes].decode(errors="replace")
            return _maybe_truncated(name, text, len(body) > self._max_bytes)
        cleaned = redact(parsed, self._fields)
        encoded = orjson.dumps(cleaned)
        if len(encoded) <= self._max_bytes:
            return {name: cleaned}
        # Cut the redacted text, never the raw body: a cut must not undo the redaction.
        return _maybe_truncated(name, encoded[: self._max_bytes].decode(errors="replace"), True)

    def write(
        self,
        *,
        epoch_s: float,
        request_id: str,
        path: str,
        status: int,
        request_body: bytes,
        response_body: bytes,
    ) -> None:
        fields: dict[str, Any] = {
            "msg": "payload",
            "request_id": request_id,
            "path": path,
            "status": status,
        }
        fields.update(self.body_fields("request", request_body))
        fields.update(self.body_fields("response", response_body))
        self._access_log.write(epoch_s=epoch_s, fields=fields)


def _maybe_truncated(name: str, text: str, truncated: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {name: text}
    if truncated:
        fields[f"{name}_truncated"] = True
    return fields
