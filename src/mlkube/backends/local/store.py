"""The controller's state in SQLite: deployments, revisions, replicas, events, documents.

Everything a restarted controller needs to carry on: which revisions exist and which one is
stable, rollout and autoscaler state, and each replica's pid and start time so that live
replicas are re-adopted instead of started twice. WAL mode lets ``mlkube`` commands read while
the controller writes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlkube.backends.local.private import private_dir, private_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deployments (key TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revisions (
  key TEXT NOT NULL, revision INTEGER NOT NULL, spec TEXT NOT NULL, source_dir TEXT NOT NULL,
  created REAL NOT NULL, status TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (key, revision));
CREATE TABLE IF NOT EXISTS replicas (name TEXT PRIMARY KEY, key TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, key TEXT NOT NULL, type TEXT NOT NULL,
  reason TEXT NOT NULL, message TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (kind TEXT NOT NULL, key TEXT NOT NULL, data TEXT NOT NULL,
  PRIMARY KEY (kind, key));
CREATE TABLE IF NOT EXISTS usage_samples (
  id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, replica TEXT NOT NULL, ts REAL NOT NULL,
  cpu_cores REAL, memory_bytes INTEGER, cpu_request_cores REAL, rps REAL, p95_ms REAL);
CREATE INDEX IF NOT EXISTS usage_samples_key_ts ON usage_samples (key, ts);
CREATE TABLE IF NOT EXISTS oom_kills (
  key TEXT NOT NULL, replica TEXT NOT NULL, restart INTEGER NOT NULL, ts REAL NOT NULL,
  memory_bytes INTEGER NOT NULL, memory_request_bytes INTEGER,
  PRIMARY KEY (key, replica, restart));
"""
EVENTS_KEPT = 1000  # per deployment; older events are dropped as kubelet drops old events
USAGE_MAX_AGE_S = 8 * 86400.0
"""Usage history kept per deployment: the VPA recommender's default 8 days."""
USAGE_ROWS_KEPT = 100_000
"""At most this many usage samples per deployment (about 5.8 days of one replica at 5 s)."""
USAGE_PRUNE_EVERY = 100
"""The row cap is enforced every this many ``add_usage`` calls (the age bound every call)."""


@dataclass(frozen=True, slots=True)
class RevisionRow:
    """One revision of a deployment: the spec document it was created from."""

    revision: int
    spec: dict[str, Any]
    source_dir: str
    created: float
    status: str
    reason: str


@dataclass(frozen=True, slots=True)
class EventRow:
    """One event, like a Kubernetes Event."""

    ts: float
    type: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One replica's usage over one scrape period, at wall-clock time ``ts``."""

    replica: str
    ts: float
    cpu_cores: float | None
    """Cores used on average over the scrape period (CPU seconds / seconds)."""
    memory_bytes: int | None
    """Resident set size at the scrape."""
    cpu_request_cores: float | None
    """The replica's CPU request (the VPA weighs CPU samples by it)."""
    rps: float | None
    """Requests/s the load balancer sent to this replica over the scrape period."""
    p95_ms: float | None
    """The replica's p95 request latency over the scrape period."""


@dataclass(frozen=True, slots=True)
class OomRow:
    """A replica was OOMKilled (``restart`` is its restart count, so each kill is kept once)."""

    replica: str
    restart: int
    ts: float
    memory_bytes: int
    """What it held when killed: its last RSS, at least its memory limit."""
    memory_request_bytes: int | None


class Store:
    """A thin typed wrapper over the SQLite file."""

    def __init__(self, path: Path) -> None:
        # Owner-only: events and specs are private; SQLite gives its -wal and -shm files the
        # database file's mode.
        private_dir(path.parent)
        private_file(path)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._usage_adds = 0

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # deployments -------------------------------------------------------------------------
    def put_deployment(self, key: str, data: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO deployments (key, data) VALUES (?, ?)", (key, json.dumps(data))
        )

    def deployments(self) -> dict[str, dict[str, Any]]:
        rows = self._db.execute("SELECT key, data FROM deployments").fetchall()
        return {key: json.loads(data) for key, data in rows}

    def delete_deployment(self, key: str) -> None:
        with self.transaction():
            for table in ("deployments", "revisions", "replicas"):
                self._db.execute(f"DELETE FROM {table} WHERE key = ?", (key,))  # noqa: S608

    # revisions ---------------------------------------------------------------------------
    def add_revision(self, key: str, row: RevisionRow) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO revisions VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                row.revision,
                json.dumps(row.spec),
                row.source_dir,
                row.created,
                row.status,
                row.reason,
            ),
        )

    def set_revision_status(self, key: str, revision: int, status: str, reason: str) -> None:
        self._db.execute(
            "UPDATE revisions SET status = ?, reason = ? WHERE key = ? AND revision = ?",
            (status, reason, key, revision),
        )

    def revisions(self, key: str) -> list[RevisionRow]:
        rows = self._db.execute(
            "SELECT revision, spec, source_dir, created, status, reason FROM revisions "
            "WHERE key = ? ORDER BY revision",
            (key,),
        ).fetchall()
        return [RevisionRow(r, json.loads(s), d, c, st, rs) for r, s, d, c, st, rs in rows]

    # replicas ----------------------------------------------------------------------------
    def put_replica(self, key: str, name: str, data: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO replicas (name, key, data) VALUES (?, ?, ?)",
            (name, key, json.dumps(data)),
        )

    def delete_replica(self, name: str) -> None:
        self._db.execute("DELETE FROM replicas WHERE name = ?", (name,))

    def replicas(self, key: str) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT data FROM replicas WHERE key = ?", (key,)).fetchall()
        return [json.loads(data) for (data,) in rows]

    # events ------------------------------------------------------------------------------
    def add_event(self, key: str, event: EventRow) -> None:
        self._db.execute(
            "INSERT INTO events (ts, key, type, reason, message) VALUES (?, ?, ?, ?, ?)",
            (event.ts, key, event.type, event.reason, event.message),
        )
        self._db.execute(
            "DELETE FROM events WHERE key = ? AND id <= "
            "(SELECT id FROM events WHERE key = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (key, key, EVENTS_KEPT),
        )

    def events(self, key: str, limit: int = 100) -> list[EventRow]:
        rows = self._db.execute(
            "SELECT ts, type, reason, message FROM events WHERE key = ? ORDER BY id DESC LIMIT ?",
            (key, limit),
        ).fetchall()
        return [EventRow(*row) for row in reversed(rows)]

    # other documents (Quota, PriorityClass) ----------------------------------------------
    def put_document(self, kind: str, key: str, data: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO documents (kind, key, data) VALUES (?, ?, ?)",
            (kind, key, json.dumps(data)),
        )

    def documents(self, kind: str) -> dict[str, dict[str, Any]]:
        rows = self._db.execute("SELECT key, data FROM documents WHERE kind = ?", (kind,))
        return {key: json.loads(data) for key, data in rows.fetchall()}

    # usage samples and OOM kills (``mlkube recommend NAME``) ------------------------------
    def add_usage(self, key: str, rows: list[UsageRow], *, now: float) -> None:
        """Record one scrape's samples; drop what is older than 8 days or over the row cap."""
        with self.transaction():
            self._db.executemany(
                "INSERT INTO usage_samples (key, replica, ts, cpu_cores, memory_bytes, "
                "cpu_request_cores, rps, p95_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        key,
                        r.replica,
                        r.ts,
                        r.cpu_cores,
                        r.memory_bytes,
                        r.cpu_request_cores,
                        r.rps,
                        r.p95_ms,
                    )
                    for r in rows
                ],
            )
            cutoff = now - USAGE_MAX_AGE_S
            self._db.execute("DELETE FROM usage_samples WHERE key = ? AND ts < ?", (key, cutoff))
            self._db.execute("DELETE FROM oom_kills WHERE key = ? AND ts < ?", (key, cutoff))
            self._usage_adds += 1
            if self._usage_adds % USAGE_PRUNE_EVERY == 0:
                self._prune_usage(cutoff)

    def _prune_usage(self, cutoff: float) -> None:
        """Every deployment's rows past the age bound (also those no longer running) and past
        the row cap."""
        self._db.execute("DELETE FROM usage_samples WHERE ts < ?", (cutoff,))
        self._db.execute("DELETE FROM oom_kills WHERE ts < ?", (cutoff,))
        keys = [k for (k,) in self._db.execute("SELECT DISTINCT key FROM usage_samples")]
        for key in keys:
            self._db.execute(
                "DELETE FROM usage_samples WHERE key = ? AND ts <= (SELECT ts FROM usage_samples "
                "WHERE key = ? ORDER BY ts DESC LIMIT 1 OFFSET ?)",
                (key, key, USAGE_ROWS_KEPT),
            )

    def usage(self, key: str, since: float = 0.0) -> list[UsageRow]:
        """A deployment's samples at or after ``since``, oldest first."""
        rows = self._db.execute(
            "SELECT replica, ts, cpu_cores, memory_bytes, cpu_request_cores, rps, p95_ms "
            "FROM usage_samples WHERE key = ? AND ts >= ? ORDER BY ts, id",
            (key, since),
        ).fetchall()
        return [UsageRow(*row) for row in rows]

    def add_oom(self, key: str, row: OomRow) -> bool:
        """Record an OOM kill; False when that kill (replica, restart count) is already known."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO oom_kills VALUES (?, ?, ?, ?, ?, ?)",
            (key, row.replica, row.restart, row.ts, row.memory_bytes, row.memory_request_bytes),
        )
        return cursor.rowcount == 1

    def ooms(self, key: str, since: float = 0.0) -> list[OomRow]:
        """A deployment's OOM kills at or after ``since``, oldest first."""
        rows = self._db.execute(
            "SELECT replica, restart, ts, memory_bytes, memory_request_bytes FROM oom_kills "
            "WHERE key = ? AND ts >= ? ORDER BY ts",
            (key, since),
        ).fetchall()
        return [OomRow(*row) for row in rows]

    def delete_usage(self, key: str) -> None:
        """Forget a deployment's usage history (``mlkube down``)."""
        with self.transaction():
            self._db.execute("DELETE FROM usage_samples WHERE key = ?", (key,))
            self._db.execute("DELETE FROM oom_kills WHERE key = ?", (key,))
