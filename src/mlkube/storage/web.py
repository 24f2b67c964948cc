"""http:// and https:// models through httpx, and the HTTP client the gs:// module shares.

One file per URI, as ``curl --location`` downloads it. Its version (the cache key) is the
ETag, else Last-Modified and Content-Length, from a HEAD request. A download that stops is
continued with ``Range: bytes=N-`` and ``If-Range`` (RFC 9110 §14.2, §13.1.5); a server that
answers 200 instead of 206 sends the whole file again. TLS is verified against the system's
CA certificates, or the bundle in ``$MLKUBE_CA_BUNDLE`` / ``$SSL_CERT_FILE``.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator

import httpx

from mlkube.storage.objects import FetchError, RemoteObject, TransientError
from mlkube.storage.uri import RemoteUri

CA_VARIABLES = ("MLKUBE_CA_BUNDLE", "SSL_CERT_FILE")
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def http_client(headers: dict[str, str] | None = None) -> httpx.Client:
    """A client that follows redirects and trusts the configured CA bundle."""
    cafile = next((os.environ[name] for name in CA_VARIABLES if os.environ.get(name)), None)
    context = ssl.create_default_context(cafile=cafile)
    return httpx.Client(
        verify=context, follow_redirects=True, timeout=TIMEOUT, headers=headers, trust_env=False
    )


class WebSource:
    """The one file of an http(s):// URI."""

    def __init__(self, remote: RemoteUri) -> None:
        self.remote = remote
        self._client = http_client()

    def list_objects(self) -> list[RemoteObject]:
        url = self.remote.key
        try:
            response = self._client.head(url)
        except httpx.HTTPError as error:
            raise TransientError(f"{url}: {error or type(error).__name__}") from None
        code = response.status_code
        if code in (405, 501) or (400 <= code < 500 and code not in (404, 410, 429)):
            # No HEAD here (405, 501), or a URL signed for GET only (S3 presigned URLs answer
            # HEAD with 403): curl only GETs, so GET it; its version is then unknown.
            return [RemoteObject(self.remote.name, url, None, "", sha256=self.remote.sha256)]
        check_status(url, response)
        length = response.headers.get("content-length")
        etag = response.headers.get("etag", "")
        version = etag or " ".join(filter(None, (response.headers.get("last-modified"), length)))
        size = int(length) if length and length.isdigit() else None
        return [RemoteObject(self.remote.name, url, size, version, sha256=self.remote.sha256)]

    def close(self) -> None:
        self._client.close()

    def read(self, item: RemoteObject, offset: int) -> tuple[int, Iterator[bytes]]:
        headers = {}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if item.version.startswith('"'):  # a strong ETag: the range only if unchanged
                headers["If-Range"] = item.version
        return stream(self._client, item.locator, headers, offset)


def stream(
    client: httpx.Client, url: str, headers: dict[str, str], offset: int
) -> tuple[int, Iterator[bytes]]:
    """GET ``url``: the offset its body starts at and its chunks (closed when exhausted)."""
    try:
        response = client.send(client.build_request("GET", url, headers=headers), stream=True)
    except httpx.HTTPError as error:
        raise TransientError(f"{url}: {error or type(error).__name__}") from None
    if response.status_code == 416:  # the part on disk is longer than the file: start over
        response.close()
        return stream(client, url, {}, 0)
    if response.status_code != 206:
        try:
            check_status(url, response)
        except FetchError:
            response.close()
            raise
        offset = 0
    return offset, _chunks(response, url)


def _chunks(response: httpx.Response, url: str) -> Iterator[bytes]:
    try:
        yield from response.iter_bytes()  # as it arrives: a drop keeps what came
    except httpx.HTTPError as error:
        raise TransientError(
            f"{url}: the download stopped: {error or type(error).__name__}"
        ) from None
    finally:
        response.close()


def check_status(url: str, response: httpx.Response) -> None:
    """FetchError for a 4xx (it will not change), TransientError for a 5xx."""
    code = response.status_code
    if code < 400:
        return
    reason = f"{url}: HTTP {code} {response.reason_phrase}".rstrip()
    if code in (401, 403):
        reason += " (access denied)"
    if code >= 500 or code in (408, 429):
        raise TransientError(reason)
    raise FetchError(reason)
