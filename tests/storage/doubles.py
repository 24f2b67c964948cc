"""Servers the storage tests download from, all on 127.0.0.1.

- ``S3Server``: moto's S3 server (the WSGI app ``moto.server.ThreadedMotoServer`` runs, on a
  werkzeug server in a thread) behind a middleware that counts object GETs, records their
  ``Range`` headers, and can spoil the next GET: wrong bytes, or a body cut off halfway.
- ``WebServer``: an HTTPS (or HTTP) file server with ETag, HEAD and ``Range``/``If-Range``
  answered as RFC 9110 §14 says, with the same faults.
- ``GcsDouble``: the Cloud Storage JSON API, the parts ``mlkube.storage.gcs`` uses:
  objects.get metadata (https://cloud.google.com/storage/docs/json_api/v1/objects/get: name,
  size and generation as strings, md5Hash base64), objects.list with ``prefix``, paged by
  ``nextPageToken`` (https://cloud.google.com/storage/docs/json_api/v1/objects/list), media
  download with ``alt=media`` and ``Range`` (206 with Content-Range,
  https://cloud.google.com/storage/docs/downloading-objects#download-object-portion), and
  404 with a JSON error body for a missing object. Not modelled: auth, uploads, versioned
  generations other than the newest.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

_RANGE = re.compile(r"^bytes=(\d+)-$")

POLL_S = 0.02
"""How often the server thread checks for shutdown (socketserver's default is 0.5 s, which
every ``shutdown()`` -- every test's teardown -- waited out)."""


class Faults:
    """What the next object GETs suffer, one fault per GET, in order: ``corrupt`` (the same
    number of wrong bytes) or ``cut`` (half the body, then the connection closes)."""

    def __init__(self) -> None:
        self.pending: list[str] = []
        self.gets: Counter[str] = Counter()
        self.ranges: list[str | None] = []
        self._lock = threading.Lock()

    def next(self, path: str, range_header: str | None) -> str | None:
        with self._lock:
            self.gets[path] += 1
            self.ranges.append(range_header)
            return self.pending.pop(0) if self.pending else None


def spoil(body: bytes) -> bytes:
    return bytes(b ^ 0xFF for b in body)


# S3 -------------------------------------------------------------------------------------------
class _FaultyApp:
    def __init__(self, app: Any, faults: Faults) -> None:
        self.app, self.faults = app, faults

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        is_object_get = (
            environ["REQUEST_METHOD"] == "GET"
            and not environ.get("QUERY_STRING")
            and path.strip("/").count("/") >= 1
        )
        if not is_object_get:
            return self.app(environ, start_response)
        fault = self.faults.next(path, environ.get("HTTP_RANGE"))
        body = b"".join(self.app(environ, start_response))
        if fault == "corrupt":
            return [spoil(body)]
        if fault == "cut":
            return _cut(body, environ["werkzeug.socket"])
        return [body]


def _cut(body: bytes, sock: socket.socket) -> Iterator[bytes]:
    yield body[: len(body) // 2]
    sock.shutdown(socket.SHUT_RDWR)  # the half is on the wire; the rest never comes


class S3Server:
    """moto's S3 server on 127.0.0.1 with faults."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        self.faults = Faults()
        app = _FaultyApp(DomainDispatcherApplication(create_backend_app), self.faults)
        self._server = make_server(
            "127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler
        )
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL_S},  # shutdown() waits one poll
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


# HTTP(S) files --------------------------------------------------------------------------------
class _Files:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.faults = Faults()
        self.heads = 0


def _serve_bytes(
    handler: BaseHTTPRequestHandler, body: bytes, etag: str, fault: str | None
) -> None:
    """200 or 206 for ``body`` honouring Range/If-Range, with ``fault`` applied."""
    start = 0
    match = _RANGE.match(handler.headers.get("Range", ""))
    if_range = handler.headers.get("If-Range")
    if match and (if_range is None or if_range == etag):
        start = int(match.group(1))
        if start >= len(body):
            handler.send_response(416)
            handler.send_header("Content-Range", f"bytes */{len(body)}")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        handler.send_response(206)
        handler.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
    else:
        handler.send_response(200)
    part = body[start:]
    handler.send_header("Content-Length", str(len(part)))
    handler.send_header("ETag", etag)
    handler.send_header("Accept-Ranges", "bytes")
    handler.end_headers()
    if fault == "corrupt":
        handler.wfile.write(spoil(part))
    elif fault == "cut":
        handler.wfile.write(part[: len(part) // 2])
        handler.wfile.flush()
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)
    else:
        handler.wfile.write(part)


def etag_of(body: bytes) -> str:
    return f'"{hashlib.sha256(body).hexdigest()[:16]}"'


class _FileHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _FileServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_HEAD(self) -> None:
        files = self.server.state
        files.heads += 1
        if self.path.startswith("/signed/"):  # signed for GET only, as S3 presigned URLs are
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = files.files.get(urlsplit(self.path).path)
        if body is None:
            self._missing()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag_of(body))
        self.end_headers()

    def do_GET(self) -> None:
        files = self.server.state
        body = files.files.get(urlsplit(self.path).path)
        if body is None:
            self._missing()
            return
        fault = files.faults.next(self.path, self.headers.get("Range"))
        _serve_bytes(self, body, etag_of(body), fault)

    def _missing(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _FileServer(ThreadingHTTPServer):
    daemon_threads = True
    state: Any


class WebServer:
    """Files served over HTTPS (with ``context``) or HTTP on 127.0.0.1."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.state = _Files()
        self._server = _FileServer(("127.0.0.1", 0), _FileHandler)
        self._server.state = self.state
        if context is not None:
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        scheme = "https" if context is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL_S},  # shutdown() waits one poll
            daemon=True,
        )
        self._thread.start()

    @property
    def faults(self) -> Faults:
        return self.state.faults

    def put(self, path: str, body: bytes) -> str:
        self.state.files[path] = body
        return self.url + path

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


# Cloud Storage JSON API -----------------------------------------------------------------------
class _Bucket:
    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, int]] = {}
        self.faults = Faults()
        self.generation = 1000


_PREFIX = "/storage/v1/b/"


class _GcsHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _FileServer
    page_size = 2

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if not parts.path.startswith(_PREFIX):
            self._json(404, {"error": {"code": 404, "message": "Not Found"}})
            return
        bucket, _, rest = parts.path[len(_PREFIX) :].partition("/")
        buckets: dict[str, _Bucket] = self.server.state
        if bucket not in buckets:
            self._json(404, {"error": {"code": 404, "message": "The bucket does not exist."}})
            return
        store = buckets[bucket]
        if rest == "o":
            self._list(store, bucket, query)
            return
        name = unquote(rest.removeprefix("o/"))
        if name not in store.objects:
            self._json(404, {"error": {"code": 404, "message": f"No such object: {name}"}})
            return
        body, generation = store.objects[name]
        if query.get("alt") == "media":
            fault = store.faults.next(name, self.headers.get("Range"))
            _serve_bytes(self, body, f'"{generation}"', fault)
            return
        self._json(200, _resource(bucket, name, body, generation))

    def _list(self, store: _Bucket, bucket: str, query: dict[str, str]) -> None:
        names = sorted(n for n in store.objects if n.startswith(query.get("prefix", "")))
        start = int(query.get("pageToken", "0"))
        page = names[start : start + self.page_size]
        data: dict[str, Any] = {"kind": "storage#objects"}
        if page:
            data["items"] = [_resource(bucket, n, *store.objects[n]) for n in page]
        if start + self.page_size < len(names):
            data["nextPageToken"] = str(start + self.page_size)
        self._json(200, data)

    def _json(self, code: int, data: dict[str, Any]) -> None:
        body = json.dumps(data).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _resource(bucket: str, name: str, body: bytes, generation: int) -> dict[str, Any]:
    return {
        "kind": "storage#object",
        "bucket": bucket,
        "name": name,
        "size": str(len(body)),
        "generation": str(generation),
        "md5Hash": base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode(),
        "etag": base64.b64encode(str(generation).encode()).decode(),
    }


class GcsDouble:
    """The JSON API's object reads, on 127.0.0.1 over HTTP (as an emulator is)."""

    def __init__(self) -> None:
        self.buckets: dict[str, _Bucket] = {}
        self._server = _FileServer(("127.0.0.1", 0), _GcsHandler)
        self._server.state = self.buckets
        self.host = f"127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL_S},  # shutdown() waits one poll
            daemon=True,
        )
        self._thread.start()

    def put(self, bucket: str, name: str, body: bytes) -> None:
        store = self.buckets.setdefault(bucket, _Bucket())
        store.generation += 1
        store.objects[name] = (body, store.generation)

    def faults(self, bucket: str) -> Faults:
        return self.buckets.setdefault(bucket, _Bucket()).faults

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def chunks(items: Iterable[bytes]) -> bytes:
    return b"".join(items)
