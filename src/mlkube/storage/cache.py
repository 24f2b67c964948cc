"""The content-addressed cache of remote models: ``fetch(uri, cache_dir) -> Path``.

Layout of ``cache_dir`` (``$MLKUBE_MODEL_CACHE``, else ``model-cache`` in the state directory):

- ``<key>/<name>``: a complete model, a file or a folder, laid out as the Kubernetes init
  container lays it out (``mlkube.storage.uri``). ``key`` is the SHA-256 of the URI and every
  object's path, size and version (ETag, generation): new bytes on the server, new entry;
- ``<key>.json``: the manifest (each file's size and SHA-256), written last: an entry without
  it is incomplete and downloaded again;
- ``<key>.partial/``: a download in progress; a ``.part`` file there is continued with a
  ranged GET by the next try, in this process or the next one;
- ``<key>.lock``: held (``flock``) while the entry is checked or made, so replicas starting
  together download once and the others wait and reuse it;
- ``<uri-hash>.latest``: the key last fetched for a URI, used when the server cannot be reached.

Every file is checked before it joins an entry: its size, and its MD5 against the server's
(S3 ETag, GCS md5Hash) or its SHA-256 against a ``#sha256=`` fragment. A file that fails the
check is thrown away and downloaded again, up to ``attempts`` tries in all; so is a download
that stops (continued from where it stopped). The entry appears with one rename.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from mlkube.clock import Clock, SystemClock
from mlkube.storage.objects import CorruptError, FetchError, RemoteObject, Source, TransientError
from mlkube.storage.uri import RemoteUri, parse

CACHE_VARIABLE = "MLKUBE_MODEL_CACHE"
STATE_DIR_VARIABLE = "MLKUBE_STATE_DIR"
DEFAULT_ATTEMPTS = 4
_HASH_CHUNK = 1 << 20

Progress = Callable[[str], None]


def default_cache_dir() -> Path:
    """``$MLKUBE_MODEL_CACHE``, else ``$MLKUBE_STATE_DIR/model-cache``, else
    ``~/.mlkube/model-cache``."""
    explicit = os.environ.get(CACHE_VARIABLE)
    if explicit:
        return Path(explicit).expanduser()
    state = os.environ.get(STATE_DIR_VARIABLE) or "~/.mlkube"
    return Path(state).expanduser() / "model-cache"


def fetch(
    uri: str,
    cache_dir: Path,
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    progress: Progress | None = None,
    clock: Clock | None = None,
) -> Path:
    """The local path of the model at ``uri``, downloaded into ``cache_dir`` unless a complete
    entry for the same object versions is there. Raises FetchError with a one-line reason."""
    try:
        remote = parse(uri)
    except ValueError as error:
        raise FetchError(str(error)) from None
    note = progress or (lambda _line: None)
    run = _Retrier(attempts, clock or SystemClock())
    source = open_source(remote)
    try:
        return _fetch(source, remote, cache_dir, run, note)
    finally:
        source.close()


def _fetch(
    source: Source, remote: RemoteUri, cache_dir: Path, run: _Retrier, note: Progress
) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    pointer = cache_dir / f"{_digest(remote.uri)[:24]}.latest"
    try:
        objects = run(source.list_objects)
    except TransientError as error:
        cached = _last_good(cache_dir, pointer, remote)
        if cached is None:
            raise
        note(f"{remote.uri}: the server did not answer ({error}); using the cached copy")
        return cached
    key = entry_key(remote.uri, objects)
    entry = cache_dir / key
    with _locked(cache_dir / f"{key}.lock"):
        if not _complete(cache_dir, key):
            total = sum(item.size or 0 for item in objects)
            note(f"downloading {remote.uri} ({len(objects)} file(s), {total} bytes)")
            _make_entry(source, remote, objects, cache_dir, key, run)
            note(f"downloaded {remote.uri} into {entry}")
        pointer.write_text(key)
    return entry / remote.name


def open_source(remote: RemoteUri) -> Source:
    """The scheme module's client for ``remote``."""
    if remote.scheme == "s3":
        from mlkube.storage.s3 import S3Source

        return S3Source(remote)
    if remote.scheme == "gs":
        from mlkube.storage.gcs import GcsSource

        return GcsSource(remote)
    from mlkube.storage.web import WebSource

    return WebSource(remote)


def entry_key(uri: str, objects: list[RemoteObject]) -> str:
    """The cache key: the URI and every object's path, size and version."""
    parts = sorted((o.path, o.size, o.version) for o in objects)
    return _digest(json.dumps([uri, parts]))[:32]


class _Retrier:
    """Calls a step again after a TransientError, with a doubling pause."""

    def __init__(self, attempts: int, clock: Clock) -> None:
        self.attempts = max(1, attempts)
        self.clock = clock

    def pause(self, attempt: int) -> None:
        self.clock.sleep_blocking(min(0.25 * 2**attempt, 5.0))

    def __call__(self, step: Callable[[], list[RemoteObject]]) -> list[RemoteObject]:
        for attempt in range(self.attempts):
            try:
                return step()
            except TransientError:
                if attempt + 1 == self.attempts:
                    raise
                self.pause(attempt)
        raise AssertionError("unreachable")


def _make_entry(
    source: Source,
    remote: RemoteUri,
    objects: list[RemoteObject],
    cache_dir: Path,
    key: str,
    run: _Retrier,
) -> None:
    entry, manifest = cache_dir / key, cache_dir / f"{key}.json"
    manifest.unlink(missing_ok=True)
    if entry.exists():  # an entry left incomplete or damaged
        shutil.rmtree(entry)
    partial = cache_dir / f"{key}.partial"
    files = []
    for item in objects:
        target = _inside(partial, item.path, remote.uri)
        sha256 = _download(source, item, target, run, remote.uri)
        files.append({"path": item.path, "size": target.stat().st_size, "sha256": sha256})
    os.replace(partial, entry)
    _write_atomically(manifest, json.dumps({"uri": remote.uri, "files": files}, indent=1))


def _download(source: Source, item: RemoteObject, target: Path, run: _Retrier, uri: str) -> str:
    """Download ``item`` to ``target`` (continuing a ``.part`` file); its SHA-256."""
    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # finished by an earlier, interrupted fetch: check it again
        target.rename(part)
    last: FetchError | None = None
    for attempt in range(run.attempts):
        try:
            _transfer(source, item, part)
            sha256 = _verify(item, part)
        except CorruptError as error:
            part.unlink(missing_ok=True)
            last = error
        except TransientError as error:
            last = error  # the .part file stays: the next try continues it
        else:
            os.replace(part, target)
            return sha256
        if attempt + 1 < run.attempts:
            run.pause(attempt)
    raise FetchError(f"{uri}: {item.path}: gave up after {run.attempts} tries: {last}")


def _transfer(source: Source, item: RemoteObject, part: Path) -> None:
    have = part.stat().st_size if part.exists() else 0
    if item.size is not None and have >= item.size:
        if have == item.size:
            return
        part.unlink()  # longer than the object: not a prefix of it
        have = 0
    start, chunks = source.read(item, have)
    written = start
    with open(part, "ab" if start == have else "wb") as out:
        if start != have:
            out.truncate(0)
        for chunk in chunks:
            out.write(chunk)
            written += len(chunk)
    if item.size is not None and written < item.size:
        raise TransientError(f"the download stopped after {written} of {item.size} bytes")


def _verify(item: RemoteObject, part: Path) -> str:
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(part, "rb") as data:
        while block := data.read(_HASH_CHUNK):
            sha256.update(block)
            md5.update(block)
    size = part.stat().st_size
    if item.size is not None and size != item.size:
        raise CorruptError(f"got {size} bytes, the server said {item.size}")
    if item.md5 is not None and md5.hexdigest() != item.md5:
        raise CorruptError(f"MD5 {md5.hexdigest()} does not match the server's {item.md5}")
    if item.sha256 is not None and sha256.hexdigest() != item.sha256:
        raise CorruptError(f"SHA-256 {sha256.hexdigest()} is not the #sha256={item.sha256}")
    return sha256.hexdigest()


def _complete(cache_dir: Path, key: str) -> bool:
    """Whether the entry has its manifest and every file at its recorded size."""
    try:
        manifest = json.loads((cache_dir / f"{key}.json").read_text())
        entry = cache_dir / key
        return all((entry / f["path"]).stat().st_size == f["size"] for f in manifest["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _last_good(cache_dir: Path, pointer: Path, remote: RemoteUri) -> Path | None:
    try:
        key = pointer.read_text().strip()
    except OSError:
        return None
    with _locked(cache_dir / f"{key}.lock"):
        return cache_dir / key / remote.name if _complete(cache_dir, key) else None


def _inside(root: Path, relative: str, uri: str) -> Path:
    """``root/relative``, refusing an object key that climbs out of the entry."""
    path = Path(os.path.normpath(root / relative))
    if not path.is_relative_to(root) or path == root:
        raise FetchError(f"{uri}: refusing object path '{relative}' (it leaves the folder)")
    return path


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
