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
"""
EVENTS_KEPT = 1000  # per deployment; older events are dropped as kubelet drops old events


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


class Store:
    """A thin typed wrapper over the SQLite file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

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
