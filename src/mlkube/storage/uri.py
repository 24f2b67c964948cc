"""What a remote model URI names, exactly as the Kubernetes init container reads it.

Pure: no I/O. ``backends.kubernetes.render.model_source`` runs ``aws s3 cp``, ``gcloud storage cp
--recursive`` or ``curl`` into ``<mountPath>/<name>``; the local cache puts the same files at
``<entry>/<name>``:

- the name is the last segment of the URI's path (``model`` when there is none);
- ``s3://bucket/key`` copies one object to ``<name>``; ``s3://bucket/prefix/`` (a trailing
  slash: ``aws s3 cp --recursive``) copies every object under the prefix into the folder
  ``<name>``, keeping the key below the prefix as the relative path;
- ``gs://bucket/path`` copies the object when one has exactly that name, else every object
  under ``path/`` into the folder ``<name>`` (``gcloud storage cp --recursive``); a trailing
  slash always means a folder;
- ``http(s)://host/path`` downloads one file to ``<name>`` (``curl --location``). A
  ``#sha256=<hex>`` fragment (pip's convention; curl never sends fragments) is checked locally.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

FETCH_SCHEMES = ("s3://", "gs://", "https://", "http://")
"""The URI schemes the local backend downloads (pvc:// names a cluster's claim: not here)."""
_SHA256_FRAGMENT = re.compile(r"^sha256=([0-9a-fA-F]{64})$")


def is_fetched(uri: str) -> bool:
    """Whether ``uri`` names a model that is downloaded before it loads."""
    return uri.startswith(FETCH_SCHEMES)


@dataclass(frozen=True, slots=True)
class RemoteUri:
    """A parsed remote model URI."""

    uri: str
    scheme: str
    bucket: str
    """The bucket (s3, gs) or host (http, https)."""
    key: str
    """The object key or prefix, without the leading slash (s3, gs); the URL (http, https)."""
    name: str
    """The file or folder name the model gets, as in the init container's target path."""
    folder: bool
    """A trailing slash: the URI names a prefix, never one object."""
    sha256: str | None = None
    """The expected SHA-256 of an http(s) file, from a ``#sha256=`` fragment."""


def parse(uri: str) -> RemoteUri:
    """Split ``uri``; ValueError with a readable reason when it names nothing to download."""
    parts = urlsplit(uri)
    scheme = parts.scheme
    if f"{scheme}://" not in FETCH_SCHEMES:
        raise ValueError(f"'{uri}' is not an s3://, gs://, https:// or http:// URI")
    if not parts.netloc:
        what = "bucket" if scheme in ("s3", "gs") else "host"
        raise ValueError(f"'{uri}' has no {what}")
    name = posixpath.basename(parts.path.rstrip("/")) or "model"
    folder = parts.path.endswith("/") or not parts.path.strip("/")
    if scheme in ("s3", "gs"):
        if parts.query or parts.fragment:
            raise ValueError(f"'{uri}': a bucket URI takes no '?' or '#' part")
        return RemoteUri(uri, scheme, parts.netloc, parts.path.lstrip("/"), name, folder)
    sha256 = None
    if parts.fragment:
        match = _SHA256_FRAGMENT.match(parts.fragment)
        if match is None:
            raise ValueError(f"'{uri}': the only fragment understood is #sha256=<64 hex digits>")
        sha256 = match.group(1).lower()
    url = uri.split("#", 1)[0]
    return RemoteUri(url, scheme, parts.netloc, url, name, folder=False, sha256=sha256)
