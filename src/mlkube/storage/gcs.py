"""gs:// models through the Cloud Storage JSON API over httpx.

Requests (https://cloud.google.com/storage/docs/json_api/v1/objects):

- ``GET /storage/v1/b/BUCKET/o/OBJECT``: one object's metadata (size, md5Hash, generation),
  https://cloud.google.com/storage/docs/json_api/v1/objects/get;
- ``GET /storage/v1/b/BUCKET/o?prefix=P&pageToken=T``: the objects under a prefix,
  https://cloud.google.com/storage/docs/json_api/v1/objects/list;
- ``GET /storage/v1/b/BUCKET/o/OBJECT?alt=media&generation=G`` with ``Range``: the bytes of
  that generation, https://cloud.google.com/storage/docs/json_api/v1/objects/get and
  https://cloud.google.com/storage/docs/downloading-objects#download-object-portion.

The server is ``$STORAGE_EMULATOR_HOST`` (the variable Google's client libraries read for an
emulator), else https://storage.googleapis.com. Requests carry ``Authorization: Bearer`` with
``$MLKUBE_GCS_TOKEN`` or ``$GOOGLE_OAUTH_ACCESS_TOKEN`` (``gcloud auth print-access-token``),
else go anonymous (public buckets). The md5Hash is compared with the downloaded bytes.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx

from mlkube.storage.objects import FetchError, RemoteObject, TransientError
from mlkube.storage.uri import RemoteUri
from mlkube.storage.web import check_status, http_client, stream

EMULATOR_VARIABLE = "STORAGE_EMULATOR_HOST"
TOKEN_VARIABLES = ("MLKUBE_GCS_TOKEN", "GOOGLE_OAUTH_ACCESS_TOKEN")
DEFAULT_HOST = "https://storage.googleapis.com"


class GcsSource:
    """The objects of one gs:// URI."""

    def __init__(self, remote: RemoteUri) -> None:
        self.remote = remote
        host = os.environ.get(EMULATOR_VARIABLE) or DEFAULT_HOST
        if "://" not in host:
            host = f"http://{host}"
        self._base = f"{host.rstrip('/')}/storage/v1/b/{quote(remote.bucket, safe='')}/o"
        token = next((os.environ[v] for v in TOKEN_VARIABLES if os.environ.get(v)), None)
        self._client = http_client({"Authorization": f"Bearer {token}"} if token else None)

    def list_objects(self) -> list[RemoteObject]:
        remote = self.remote
        if not remote.folder:
            found = self._get(f"{self._base}/{quote(remote.key, safe='')}", {}, missing_ok=True)
            if found is not None:
                return [self._object(found, remote.name)]
        prefix = remote.key if remote.folder else f"{remote.key}/"
        items: list[dict[str, Any]] = []
        params = {"prefix": prefix}
        while True:
            page = self._get(self._base, params) or {}
            items += page.get("items", [])
            if not page.get("nextPageToken"):
                break
            params = {"prefix": prefix, "pageToken": str(page["nextPageToken"])}
        files = [item for item in items if not str(item["name"]).endswith("/")]
        if not files:
            raise FetchError(f"{remote.uri}: no such object, and no objects under {prefix}")
        return [
            self._object(item, f"{remote.name}/{str(item['name'])[len(prefix) :]}")
            for item in files
        ]

    def _get(
        self, url: str, params: dict[str, str], *, missing_ok: bool = False
    ) -> dict[str, Any] | None:
        try:
            response = self._client.get(url, params=params)
        except httpx.HTTPError as error:
            raise TransientError(f"{self.remote.uri}: {error or type(error).__name__}") from None
        if response.status_code == 404 and missing_ok:
            return None
        check_status(self.remote.uri, response)
        data: dict[str, Any] = response.json()
        return data

    def _object(self, item: dict[str, Any], path: str) -> RemoteObject:
        md5 = base64.b64decode(item["md5Hash"]).hex() if item.get("md5Hash") else None
        locator = f"{quote(str(item['name']), safe='')}?alt=media&generation={item['generation']}"
        return RemoteObject(path, locator, int(item["size"]), str(item["generation"]), md5)

    def close(self) -> None:
        self._client.close()

    def read(self, item: RemoteObject, offset: int) -> tuple[int, Iterator[bytes]]:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        return stream(self._client, f"{self._base}/{item.locator}", headers, offset)
