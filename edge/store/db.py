"""The appliance's SQLite database: items, batches, outbox, with versioned migrations.

One writer (the recorder thread) commits each group of verdicts, their outbox
messages and their image references in one transaction; readers (web UI, CLI)
open their own connections. WAL mode lets them read while the line writes.

Each table has one module that speaks its SQL: this one holds the schema, batches and
image rows; items, labels, signatures, audit, alarm_log and deviations have their own
modules beside it; the outbox is read by `edge.publish.outbox`, users and sessions by
`edge.web.auth`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edge.store import items as _items

#: Ordered migrations. Append only: a migration that shipped is never edited.
MIGRATIONS: list[str] = [
    # 1: items, batches, outbox, images
    """
    CREATE TABLE batches (
        id TEXT PRIMARY KEY,
        lot TEXT NOT NULL,
        gtin TEXT,
        expiry TEXT,
        recipe TEXT,
        started_at REAL NOT NULL,
        started_by TEXT,
        ended_at REAL,
        ended_by TEXT,
        source TEXT
    );
    CREATE TABLE items (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        batch_id TEXT REFERENCES batches(id),
        recipe TEXT,
        trigger_utc REAL NOT NULL,
        final_utc REAL,
        latency_ms REAL,
        encoder INTEGER,
        verdict TEXT NOT NULL CHECK (verdict IN ('PASS', 'REJECT')),
        reasons TEXT NOT NULL,
        findings TEXT NOT NULL,
        codes TEXT NOT NULL,
        tools TEXT NOT NULL,
        models TEXT NOT NULL,
        image_sha256 TEXT,
        source_name TEXT
    );
    CREATE INDEX items_batch ON items(batch_id, seq);
    CREATE INDEX items_verdict ON items(verdict, seq);
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        item_id TEXT,
        payload TEXT NOT NULL,
        created_utc REAL NOT NULL
    );
    CREATE TABLE images (
        sha256 TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        width INTEGER,
        height INTEGER,
        created_utc REAL NOT NULL
    );
    """,
    # 2: audit trail (hash-chained, append-only), users, e-signatures, image labels
    """
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        ts_utc TEXT NOT NULL,
        user TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        old TEXT,
        new TEXT,
        reason TEXT,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE
    );
    CREATE TABLE audit_head (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        last_id INTEGER NOT NULL,
        last_hash TEXT NOT NULL
    );
    CREATE TABLE users (
        username TEXT PRIMARY KEY,
        full_name TEXT NOT NULL,
        role TEXT NOT NULL,
        pw_hash TEXT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        locked_until REAL,
        created_utc REAL NOT NULL,
        password_changed_utc REAL
    );
    CREATE TABLE signatures (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL,
        full_name TEXT NOT NULL,
        meaning TEXT NOT NULL,
        target TEXT NOT NULL,
        reason TEXT NOT NULL,
        ts_utc TEXT NOT NULL,
        audit_hash TEXT
    );
    CREATE INDEX signatures_target ON signatures(target);
    CREATE TABLE labels (
        image_sha256 TEXT PRIMARY KEY,
        boxes TEXT NOT NULL,
        updated_by TEXT NOT NULL,
        updated_utc REAL NOT NULL
    );
    """,
    # 3: login sessions and the alarm log survive a restart of the web or line process
    """
    CREATE TABLE sessions (
        token_sha256 TEXT PRIMARY KEY,
        username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created_utc REAL NOT NULL,
        last_seen_utc REAL NOT NULL
    );
    CREATE INDEX sessions_user ON sessions(username);
    CREATE TABLE alarm_log (
        id INTEGER PRIMARY KEY,
        ts_utc REAL NOT NULL,
        event TEXT NOT NULL CHECK (event IN ('raised', 'cleared', 'acked')),
        code TEXT NOT NULL,
        message TEXT NOT NULL,
        severity TEXT NOT NULL,
        line_stop INTEGER NOT NULL,
        raised_utc REAL NOT NULL,
        by TEXT
    );
    CREATE INDEX alarm_log_raised ON alarm_log(raised_utc);
    """,
    # 4: every item's measurements (pass or reject) and the deviation records of process control
    """
    ALTER TABLE items ADD COLUMN measurements TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE deviations (
        id INTEGER PRIMARY KEY,
        batch_id TEXT,
        opened_utc REAL NOT NULL,
        measure TEXT NOT NULL,
        rule TEXT NOT NULL,
        item_id TEXT NOT NULL,
        item_index INTEGER NOT NULL,
        since_index INTEGER NOT NULL,
        value REAL NOT NULL,
        lcl REAL NOT NULL,
        ucl REAL NOT NULL,
        centre REAL NOT NULL,
        cause TEXT NOT NULL DEFAULT '',
        action TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL DEFAULT 'open'
            CHECK (state IN ('open', 'acknowledged', 'investigated', 'closed')),
        acked_by TEXT,
        acked_utc REAL,
        root_cause TEXT,
        corrective_action TEXT,
        closed_by TEXT,
        closed_utc REAL
    );
    CREATE INDEX deviations_batch ON deviations(batch_id, id);
    """,
    # 5: controlled documents (recipe and product versions), challenge runs, the recipe version
    # and content hash of every item and batch
    """
    CREATE TABLE documents (
        kind TEXT NOT NULL CHECK (kind IN ('recipe', 'product')),
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('draft', 'approved', 'retired')),
        content TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_utc REAL NOT NULL,
        approved_by TEXT,
        approved_utc REAL,
        retired_utc REAL,
        ever_approved INTEGER NOT NULL DEFAULT 0,
        note TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (kind, name, version)
    );
    CREATE UNIQUE INDEX documents_one_approved ON documents(kind, name) WHERE status = 'approved';
    CREATE TABLE challenge_runs (
        id INTEGER PRIMARY KEY,
        ts_utc REAL NOT NULL,
        gtin TEXT,
        lot TEXT,
        recipe TEXT NOT NULL,
        recipe_version INTEGER,
        passed INTEGER NOT NULL,
        units INTEGER NOT NULL,
        results TEXT NOT NULL,
        by TEXT
    );
    ALTER TABLE items ADD COLUMN recipe_version INTEGER;
    ALTER TABLE items ADD COLUMN recipe_sha256 TEXT;
    ALTER TABLE batches ADD COLUMN recipe_version INTEGER;
    ALTER TABLE batches ADD COLUMN challenge_id INTEGER
    """,
    # 6: images a technician brought in (uploads and imports from a folder) with their product
    """
    CREATE TABLE uploads (
        sha256 TEXT PRIMARY KEY REFERENCES images(sha256),
        product TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        via TEXT NOT NULL CHECK (via IN ('web', 'import')),
        added_by TEXT NOT NULL,
        added_utc REAL NOT NULL
    );
    CREATE INDEX uploads_product ON uploads(product, added_utc);
    """,
    # 7: the camera settings a batch ran with (exposure and gain per camera, read back at
    # changeover), JSON
    """
    ALTER TABLE batches ADD COLUMN camera TEXT
    """,
    # 8: the defect classes a technician added for a product (its labeller's class list)
    """
    CREATE TABLE product_classes (
        product TEXT NOT NULL,
        cls TEXT NOT NULL,
        added_by TEXT NOT NULL,
        added_utc REAL NOT NULL,
        PRIMARY KEY (product, cls)
    );
    """,
    # 9: each view's own evidence image of a multi-view item (besides the side-by-side one)
    """
    CREATE TABLE item_view_images (
        seq INTEGER NOT NULL,
        view TEXT NOT NULL,
        pos INTEGER NOT NULL,  -- the view's place in the station's `views:`
        image_sha256 TEXT NOT NULL REFERENCES images(sha256),
        PRIMARY KEY (seq, view)
    );
    CREATE INDEX item_view_images_sha ON item_view_images(image_sha256);
    """,
]


class Database:
    """Connection factory and the few queries several modules share."""

    def __init__(self, path: str | Path, synchronous: str = "NORMAL"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.synchronous = synchronous
        self._local = threading.local()
        with self.connect() as conn:
            migrate(conn)

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        """A connection private to the calling thread."""
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._local.conn = self.connect()
        return c

    @contextmanager
    def transaction(self, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        c = conn or self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        else:
            c.execute("COMMIT")

    # ------------------------------------------------------------------ items
    # The SQL of the items table lives in `edge.store.items`; these stay for the line's callers.

    def next_seq(self) -> int:
        return _items.next_seq(self.conn)

    def insert_items(
        self, conn: sqlite3.Connection, rows: Sequence[dict[str, Any]], outbox: bool
    ) -> list[int]:
        """Insert item rows (and their outbox messages) inside the caller's transaction.

        Returns the outbox sequence numbers assigned, in row order.
        """
        return _items.insert(conn, rows, outbox)

    def item(self, item_id: str) -> dict[str, Any] | None:
        return _items.get(self.conn, item_id)

    def items(
        self, where: str = "", params: Iterable[Any] = (), limit: int = 100
    ) -> list[dict[str, Any]]:
        return _items.newest(self.conn, where, params, limit)

    # ------------------------------------------------------------------ images

    def add_image(
        self, conn: sqlite3.Connection, sha256: str, path: str, width: int, height: int
    ) -> None:
        conn.execute(
            "INSERT OR IGNORE INTO images (sha256, path, width, height, created_utc)"
            " VALUES (?, ?, ?, ?, ?)",
            (sha256, path, width, height, time.time()),
        )

    def image_size(self, sha256: str) -> tuple[int, int] | None:
        """(width, height) of a stored image, or None when the store has no such image."""
        row = self.conn.execute(
            "SELECT width, height FROM images WHERE sha256 = ?", (sha256,)
        ).fetchone()
        return (int(row[0]), int(row[1])) if row is not None else None

    def recent_images(self, limit: int) -> list[str]:
        """SHA-256 of the newest stored images, newest first."""
        rows = self.conn.execute(
            "SELECT sha256 FROM images ORDER BY created_utc DESC LIMIT ?", (limit,)
        ).fetchall()
        return [r[0] for r in rows]

    # ------------------------------------------------------------------ batches

    def start_batch(self, batch: dict[str, Any]) -> None:
        with self.transaction() as c:
            c.execute(
                """INSERT INTO batches (id, lot, gtin, expiry, recipe, started_at, started_by, source,
                       recipe_version, challenge_id, camera)
                   VALUES (:id, :lot, :gtin, :expiry, :recipe, :started_at, :started_by, :source,
                       :recipe_version, :challenge_id, :camera)""",
                {
                    "started_by": None,
                    "source": None,
                    "recipe_version": None,
                    "challenge_id": None,
                    "camera": None,
                    **batch,
                },
            )

    def end_batch(self, batch_id: str, by: str | None = None) -> None:
        with self.transaction() as c:
            c.execute(
                "UPDATE batches SET ended_at = ?, ended_by = ? WHERE id = ? AND ended_at IS NULL",
                (time.time(), by, batch_id),
            )

    def open_batch(self) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT * FROM batches WHERE ended_at IS NULL ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
        return dict(row) if row else None

    def batch(self, batch_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
        return dict(row) if row else None

    def recent_batches(self, limit: int) -> list[dict[str, Any]]:
        """The newest batches first, each with `signed`: how many signatures its record has."""
        return [
            dict(r)
            for r in self.conn.execute(
                "SELECT b.*, (SELECT COUNT(*) FROM signatures s WHERE s.target = 'batch:' || b.id)"
                " AS signed FROM batches b ORDER BY started_at DESC LIMIT ?",
                (limit,),
            )
        ]

    def recent_lots(self, limit: int) -> list[dict[str, Any]]:
        """Lot, GTIN and expiry of the lots run most recently (the HMI offers them again)."""
        return [
            dict(r)
            for r in self.conn.execute(
                "SELECT lot, gtin, expiry FROM batches GROUP BY lot ORDER BY MAX(started_at) DESC"
                " LIMIT ?",
                (limit,),
            ).fetchall()
        ]


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, migrations: Sequence[str] = MIGRATIONS) -> int:
    """Apply the migrations this file has not seen yet, each in its own transaction."""
    current = schema_version(conn)
    if current > len(migrations):
        raise RuntimeError(
            f"database schema {current} is newer than this software ({len(migrations)}): "
            "refusing to run an older appliance on it"
        )
    for version, script in enumerate(migrations[current:], start=current + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _statements(script):
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return schema_version(conn)


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def read_only(path: str | Path) -> sqlite3.Connection:
    """A connection that cannot write (SQLite refuses every write on it): for work beside
    the line that must only read its records, such as a recipe preview."""
    conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, timeout=30.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=30000")
    return conn
