"""Store and forward: the outbox table, read in sequence order, deleted after PUBACK.

The recorder writes each result into `outbox` in the same transaction as its item row;
the outbox `seq` (AUTOINCREMENT, never reused) is the gap-free per-appliance sequence
number subscribers use to detect gaps. This module only reads and deletes.

`Forwarder` decides what to hand to the client next: after each (re)connect, rows that
were already waiting form the backlog, replayed in order at a limited rate, while rows
recorded after the connect ("live") go out at once. Rows handed to the client and not
yet acknowledged are the client's to resend; they are skipped until acked or restarted.

With `mqtt.encoding: both`, JSON and Sparkplug read the same outbox: `OutboxAcks` deletes
a row once every output has had it acknowledged, and each output's Forwarder skips rows
it already has (so a reconnect of one never resends what only the other still waits for).
What one output had acked before a restart is sent by it again after the restart
(at least once; subscribers de-duplicate by the result's `seq`).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge.store.db import Database


@dataclass(slots=True)
class Row:
    seq: int
    kind: str
    item_id: str | None
    payload: str


class Outbox:
    def __init__(self, db: Database):
        self.db = db
        self.conn = db.connect()
        self._lock = threading.Lock()

    def bounds(self) -> tuple[int | None, int | None]:
        with self._lock:
            r = self.conn.execute("SELECT MIN(seq), MAX(seq) FROM outbox").fetchone()
        return r[0], r[1]

    def count(self) -> int:
        with self._lock:
            return int(self.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def read(self, first: int, last: int | None, limit: int) -> list[Row]:
        """Rows with first <= seq (<= last), in seq order."""
        if limit <= 0:
            return []
        sql = "SELECT seq, kind, item_id, payload FROM outbox WHERE seq >= ?"
        args: list[int] = [first]
        if last is not None:
            sql += " AND seq <= ?"
            args.append(last)
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self.conn.execute(sql, args).fetchall()
        return [Row(int(r[0]), r[1], r[2], r[3]) for r in rows]

    def delete(self, seqs: list[int]) -> None:
        """Raises sqlite3.Error (disk full, locked): the caller keeps the seqs and retries."""
        if not seqs:
            return
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
                self.conn.execute("COMMIT")
            except sqlite3.Error:
                self.conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self.conn.close()


class Forwarder:
    """Picks the rows to hand out: live first, backlog rate-limited, never one twice at once."""

    def __init__(
        self,
        outbox: Outbox,
        replay_rate_per_s: float,
        max_inflight: int,
        skip: Callable[[int], bool] | None = None,
    ):
        self.outbox = outbox
        self.skip = skip  # rows this output already has acked (another one still waits)
        self.rate = replay_rate_per_s
        self.max_inflight = max_inflight
        self.handed: set[int] = set()  # with the client, awaiting PUBACK
        self.backlog_next = 1
        self.backlog_last = 0
        self.live_next = 1
        self._tokens = 0.0
        self._t = time.monotonic()

    def on_connect(self) -> None:
        lo, hi = self.outbox.bounds()
        self.backlog_next = lo or 1
        self.backlog_last = hi or 0
        self.live_next = (hi or 0) + 1
        self._tokens = 0.0
        self._t = time.monotonic()

    @property
    def backlog(self) -> int:
        return max(0, self.backlog_last - self.backlog_next + 1)

    def next_rows(self) -> list[Row]:
        room = self.max_inflight - len(self.handed)
        out = self.outbox.read(self.live_next, None, room)
        if out:
            self.live_next = out[-1].seq + 1
        room -= len(out)
        if self.backlog_next <= self.backlog_last:
            now = time.monotonic()
            self._tokens = min(self._tokens + (now - self._t) * self.rate, max(self.rate, 1.0))
            self._t = now
            n = min(int(self._tokens), room)
            while n > 0 and self.backlog_next <= self.backlog_last:
                rows = self.outbox.read(self.backlog_next, self.backlog_last, n + len(self.handed))
                if not rows:
                    self.backlog_next = self.backlog_last + 1
                    break
                for r in rows:
                    self.backlog_next = r.seq + 1
                    if r.seq in self.handed or (self.skip is not None and self.skip(r.seq)):
                        continue
                    out.append(r)
                    self._tokens -= 1
                    n -= 1
                    if n == 0:
                        break
        return [
            r
            for r in out
            if r.seq not in self.handed and (self.skip is None or not self.skip(r.seq))
        ]


class OutboxAcks:
    """Deletes an outbox row once every output that reads the outbox has had it acked."""

    def __init__(self, outbox: Outbox, outputs: tuple[str, ...]):
        self.outbox = outbox
        self.outputs = frozenset(outputs)
        self._partial: dict[int, set[str]] = {}  # seq -> outputs that have it acked
        self._lock = threading.Lock()

    def delete(self, output: str, seqs: list[int]) -> None:
        """Raises sqlite3.Error like `Outbox.delete`; calling again with the same seqs is safe."""
        if len(self.outputs) == 1:
            self.outbox.delete(seqs)
            return
        with self._lock:
            ready = []
            for s in seqs:
                got = self._partial.setdefault(s, set())
                got.add(output)
                if got >= self.outputs:
                    ready.append(s)
        self.outbox.delete(ready)
        with self._lock:
            for s in ready:
                self._partial.pop(s, None)

    def has(self, output: str) -> Callable[[int], bool] | None:
        """For a Forwarder: whether `output` already has a row acked (None with one output)."""
        if len(self.outputs) == 1:
            return None

        def acked(seq: int) -> bool:
            got = self._partial.get(seq)
            return got is not None and output in got

        return acked

    def waiting(self, output: str) -> int:
        """Rows still in the outbox only because another output has not had them acked."""
        with self._lock:
            return sum(1 for got in self._partial.values() if output in got)


def shared_acks(app: Any) -> OutboxAcks:
    """The one OutboxAcks of an appliance, for the outputs `mqtt.encoding` turns on."""
    acks = getattr(app, "outbox_acks", None)
    if acks is None:
        enc = app.cfg.mqtt.encoding
        outputs = ("json", "sparkplug") if enc == "both" else (enc,)
        acks = OutboxAcks(Outbox(app.pipeline.db), outputs)
        app.outbox_acks = acks
    return acks
