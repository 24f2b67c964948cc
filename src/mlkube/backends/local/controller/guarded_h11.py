"""uvicorn's h11 protocol with the limits a control API on a shared machine needs.

What uvicorn leaves open, and this class closes:

- **Read timeout.** A connection must deliver a whole request (head and body) within
  ``read_timeout_s`` of its first byte (or of connecting): a client that stalls gets 408 and
  the connection closes. uvicorn only times out idle keep-alive connections.
- **Head limit.** A head larger than ``MAX_HEAD_BYTES`` that never ends makes h11 give up; uvicorn
  then answers a plain-text 400 and closes at once, so a client still sending gets a reset and
  never reads it. Here it is a 431 in the API's error shape. (A complete head over the limit is
  refused by the app's guard, ``server.TokenGuard``.)
- **Lingering close.** Every refusal here, and every answer the app closes the connection
  after while the client is still sending its body (a 413), is followed by a half-close (FIN);
  then the connection reads and discards what the client still sends, as nginx does
  (``lingering_timeout``, ``lingering_time``): it closes once the client is quiet for
  ``LINGER_IDLE_S`` or after ``LINGER_MAX_S`` in all, so a client still uploading reads the
  answer instead of a reset.
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any, cast

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEAD_BYTES = 16 * 1024
"""Longest request line plus headers accepted (uvicorn's h11 default for an incomplete head)."""
READ_TIMEOUT_S = 10.0
"""Time a client has to send a whole request once it starts (or once it connects)."""
LINGER_IDLE_S = 2.0
"""A refused connection closes when the client sent nothing for this long..."""
LINGER_MAX_S = 30.0
"""...or this long after the refusal, whatever the client still sends."""

_WAITING_FOR_CLIENT = (h11.IDLE, h11.SEND_BODY)
_NOTHING_SENT = (h11.IDLE, h11.SEND_RESPONSE)


class GuardedH11Protocol(H11Protocol):
    """One connection of the control API (see the module docstring)."""

    read_timeout_s = READ_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._linger_timer: asyncio.TimerHandle | None = None
        self._linger_until = 0.0
        self._stopping = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._raw = transport
        # uvicorn closes ``self.transport`` after an answer with ``Connection: close``; the
        # proxy turns that into a lingering close while the client is still sending.
        super().connection_made(cast(asyncio.Transport, _LingeringTransport(transport, self)))
        self._arm_read_timer()

    def shutdown(self) -> None:
        """The server stops: an answer in progress still completes (uvicorn closes after it),
        but nothing lingers."""
        self._stopping = True
        if self._refused:
            self._raw.close()
            return
        super().shutdown()

    def close_after_answer(self) -> None:
        """The answer is written and the connection must close: linger when the client has
        not finished sending its request (it would read a reset instead of the answer)."""
        still_sending = self.conn.their_state is h11.SEND_BODY
        if self._refused or self._stopping or self._raw.is_closing() or not still_sending:
            self._raw.close()
            return
        self._disarm_read_timer()
        self._refused = True
        self._half_close_and_linger()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_read_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._linger()  # read and drop: the client is still sending
            return
        if self._read_timer is None and self.conn.their_state is h11.IDLE:
            self._arm_read_timer()  # the first bytes of a new request
        super().data_received(data)
        if self.conn.their_state not in _WAITING_FOR_CLIENT:
            self._disarm_read_timer()  # the whole request is in (or the connection failed)

    def eof_received(self) -> None:
        if self._refused:
            self._raw.close()  # the client is done sending: the lingering can end

    def send_400_response(self, msg: str) -> None:
        """h11 could not parse the request: 431 when the head outgrew the limit, else 400."""
        buffered = len(self.conn.trailing_data[0])
        if buffered >= MAX_HEAD_BYTES:
            self.refuse(431, f"the request head is over {MAX_HEAD_BYTES} bytes")
        else:
            self.refuse(400, "malformed HTTP request")

    def refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with ``{"error": message}`` and close the lingering way."""
        self._disarm_read_timer()
        if self._refused or self._raw.is_closing():
            return
        self._refused = True
        body = json.dumps({"error": message}).encode()
        head = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        ).encode()
        self._raw.write(head + body)
        self._half_close_and_linger()

    def _half_close_and_linger(self) -> None:
        if self._raw.can_write_eof():
            self._raw.write_eof()
        self._raw.resume_reading()
        self._linger_until = self.loop.time() + LINGER_MAX_S
        self._linger()

    def _linger(self) -> None:
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        wait = min(LINGER_IDLE_S, self._linger_until - self.loop.time())
        if wait <= 0:
            self._raw.close()
            return
        self._linger_timer = self.loop.call_later(wait, self._raw.close)

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.conn.their_state not in _WAITING_FOR_CLIENT or self._raw.is_closing():
            return
        if self.conn.our_state in _NOTHING_SENT:
            self.refuse(408, f"the request was not received within {self.read_timeout_s:g} s")
        else:
            self._raw.close()

    def _arm_read_timer(self) -> None:
        self._disarm_read_timer()
        self._read_timer = self.loop.call_later(self.read_timeout_s, self._read_timed_out)

    def _disarm_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None


class _LingeringTransport:
    """The connection's transport as uvicorn uses it, except that ``close`` asks the protocol
    (``close_after_answer``); everything else is the real transport's."""

    def __init__(self, transport: asyncio.Transport, protocol: GuardedH11Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def close(self) -> None:
        self._protocol.close_after_answer()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
