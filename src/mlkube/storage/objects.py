"""What every storage scheme module provides: the objects a URI names, and their bytes.

A scheme module (``s3``, ``gcs``, ``web``) lists a URI's objects with the version tag that keys
the cache (ETag, generation) and the checksum the server vouches for, and reads one object from
an offset (a ranged GET, so an interrupted download continues where it stopped).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from mlkube.errors import MlkubeError


class FetchError(MlkubeError):
    """A remote model could not be downloaded; the message says what and why, in one line."""


class TransientError(FetchError):
    """A network failure or an interrupted body: worth another try, from where it stopped."""


class CorruptError(FetchError):
    """The bytes do not match the server's checksum: the partial file is thrown away."""


@dataclass(frozen=True, slots=True)
class RemoteObject:
    """One object to download."""

    path: str
    """Where it goes, relative to the cache entry (``<name>`` or ``<name>/<key below prefix>``)."""
    locator: str
    """What the scheme module needs to read it (an object key, a URL)."""
    size: int | None
    """Bytes, when the server says (a web server may not)."""
    version: str
    """ETag, generation or Last-Modified: a new value means new bytes and a new cache entry."""
    md5: str | None = None
    """The MD5 (hex) the server vouches for, when it gives one."""
    sha256: str | None = None
    """The SHA-256 (hex) the URI demands (``#sha256=``), when it does."""


class Source(Protocol):
    """One scheme's client."""

    def list_objects(self) -> list[RemoteObject]:
        """The objects the URI names; FetchError when there are none."""
        ...

    def read(self, item: RemoteObject, offset: int) -> tuple[int, Iterator[bytes]]:
        """The object's bytes from ``offset`` on, and the offset they really start at (0 when
        the server ignored the range). Raises TransientError on network failures."""
        ...

    def close(self) -> None:
        """Close the client's connections."""
        ...
