"""The recorder: every final item is committed before it is emitted, or rejected NOT_RECORDED.

Normal path: final items queue here (bounded by `records.max_backlog`); one thread commits
them in groups (item rows and their outbox messages in one transaction), then publishes
them on the bus (PLC gate, MQTT, HMI): nothing is emitted that is not recorded.

When records cannot be written (the disk is full, an I/O error, the backlog is full because
the disk is too slow) the line must not run on unrecorded, and the gate must still get a
verdict for every item. Such an item is made REJECT `NOT_RECORDED` and published at once,
so the PLC rejects it and the counters see it; a critical line-stop alarm is raised
(`NOT_RECORDED`, and `RECORD_FAILED` while writes fail). Its row (REJECT NOT_RECORDED,
with what the tools found) is kept in memory, bounded, and written, with its outbox
message, as soon as the database takes writes again, so the batch's totals and MES see
it. `/readyz` reports 503 while writes fail (see `health`).

Evidence images are named by the SHA-256 of their pixels at commit (cheap) and encoded to
PNG afterwards (slow) by `ImageWriter`. An item row names its image only once the file
is written: the writer links rows to files in a second, small transaction. A crash or a
failed write in between leaves a row without an image, never a row naming a file that
does not exist; a failed write leaves no temporary file. Free space is watched in steps
(`edge.store.diskspace`): pass samples, then reject images are given up first.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from typing import Any

from edge.alarms import Alarms
from edge.bus import Bus
from edge.domain import Item, Reason, Verdict
from edge.line.views import evidence_image, view_images
from edge.record import item_row
from edge.stats import Stats
from edge.store import items as item_rows
from edge.store.db import Database
from edge.store.diskspace import DiskGuard
from edge.store.images import ImageStore, ImageWriter, image_id

log = logging.getLogger(__name__)

_STOP = object()
#: NOT_RECORDED rows held for a later write; beyond this only a count is kept (and logged)
MAX_PENDING = 50_000
GROUP = 64
HELD_CHUNK = 500
LOG_EVERY_S = 10.0


class Recorder:
    """Commits final items (row, outbox message) in groups, then emits them."""

    def __init__(
        self,
        db: Database,
        images: ImageStore,
        bus: Bus,
        stats: Stats,
        alarms: Alarms,
        station: str,
        *,
        outbox: bool,
        sample_pass_every: int,
        keep_reject_images: bool,
        records: Any = None,
    ):
        from edge.config import RecordsConfig

        self.db, self.images, self.bus, self.stats, self.alarms = db, images, bus, stats, alarms
        self.station = station
        self.outbox = outbox
        self.sample_pass_every = sample_pass_every
        self.keep_reject_images = keep_reject_images
        self.records = records or RecordsConfig()
        self.max_backlog = self.records.max_backlog
        self.disk = DiskGuard(db.path.parent, self.records, alarms)
        self.queue: queue.Queue[Any] = queue.Queue(self.max_backlog)
        swept = images.sweep_temp()
        if swept:
            log.warning("removed %d temporary image files left by an earlier crash", swept)
        self.writer = ImageWriter(images, on_done=self._link_images)
        #: items accounted for: recorded, or emitted as REJECT NOT_RECORDED
        self.recorded = 0
        self.not_recorded = 0  # items emitted as NOT_RECORDED (their rows may follow later)
        self.lost_rows = 0  # NOT_RECORDED rows beyond MAX_PENDING: counted, never written
        self.images_failed = 0
        self.images_skipped = 0  # not kept because the image writer was a full queue behind
        self._last_skip_log = -LOG_EVERY_S
        self.failing: str | None = None  # the last write error, None once writes succeed
        self._pending: list[dict[str, Any]] = []
        self._amends: list[tuple[str, str, dict[str, Any]]] = []
        self._last_log = -LOG_EVERY_S
        self._lock = threading.Lock()
        self._conn = db.connect()
        self._link_conn: Any = None
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ intake

    def submit(self, item: Item) -> None:
        """Called once per final item (tracker). Never blocks: a full backlog rejects."""
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self._emit_not_recorded(
                [item], f"recorder backlog full (records.max_backlog = {self.max_backlog})"
            )

    def health(self) -> tuple[bool, str]:
        """Whether records can be written now, and why not (for /readyz)."""
        free = self.disk.check()
        if self.failing:
            return False, f"records cannot be written: {self.failing}"
        if self.disk.records_at_risk:
            return False, (
                f"free space {free:.0f} MB below records.min_free_mb "
                f"({self.records.min_free_mb:g} MB)"
            )
        if self.queue.full():
            return False, f"recorder backlog full ({self.max_backlog} items)"
        with self._lock:
            waiting = len(self._pending) + len(self._amends)
        if waiting:
            return False, f"{waiting} held rows (NOT_RECORDED, amendments) waiting to be written"
        return True, f"recording ({free:.0f} MB free)" if free is not None else "recording"

    def status(self) -> dict[str, Any]:
        with self._lock:
            pending = len(self._pending) + len(self._amends)
        return {
            "backlog": self.queue.qsize(),
            "max_backlog": self.max_backlog,
            "not_recorded": self.not_recorded,
            "pending_rows": pending,
            "lost_rows": self.lost_rows,
            "images_failed": self.images_failed,
            "images_skipped": self.images_skipped,
            "free_mb": None if self.disk.free is None else round(self.disk.free, 1),
            "failing": self.failing,
        }

    # ------------------------------------------------------------------ thread

    def _keep_image(self, item: Item) -> bool:
        if item.frame is None or (item.frame.image is None and item.views is None):
            return False
        if item.verdict is Verdict.REJECT:
            return self.keep_reject_images and self.disk.keep_reject_images
        n = self.sample_pass_every
        return n > 0 and item.seq % n == 0 and self.disk.keep_pass_images

    def _run(self) -> None:
        while True:
            try:
                first = self.queue.get(timeout=1.0)
            except queue.Empty:
                self._idle()
                continue
            if first is _STOP:
                return
            batch, stop = [first], False
            while len(batch) < GROUP:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            self._record(batch)
            if stop:
                return

    def _idle(self) -> None:
        """No items: retry the held NOT_RECORDED rows, and notice space that came back."""
        self.disk.check()
        with self._lock:
            waiting = bool(self._pending or self._amends)
        if waiting:
            try:
                self._commit([])
            except Exception as exc:
                self._failed(exc)
            else:
                self._recovered()
        elif self.failing and (self.disk.free or 0.0) > self.records.min_free_mb + 1.0:
            self._recovered()  # nothing held to prove it with: room beyond the reserve will do

    def _record(self, items: list[Item]) -> None:
        self.disk.check()
        # sha -> (image, width, height, item seqs it is the image of, (seq, view, pos) it shows)
        imgs: dict[str, tuple[Any, int, int, list[int], list[tuple[int, str, int]]]] = {}

        def keep(image: Any) -> tuple[str, list[int], list[tuple[int, str, int]]]:
            sha = image_id(image)
            h, w = image.shape[:2]
            entry = imgs.setdefault(sha, (image, w, h, [], []))
            return sha, entry[3], entry[4]

        for it in items:
            if it.image_sha256 is None and self._keep_image(it):
                image = evidence_image(it)  # several views: side by side in one file
                if image is None:
                    continue
                it.image_sha256, seqs, _ = keep(image)
                seqs.append(it.seq)
                if it.views and self.records.keep_view_images:  # and each view's own
                    for pos, (view, shot) in enumerate(view_images(it).items()):
                        keep(shot)[2].append((it.seq, view, pos))
        rows = [item_row(it, self.station) for it in items]
        for r in rows:
            r["image_sha256"] = None  # linked once the file exists (_link_images)
        try:
            self._commit(rows)
        except Exception as exc:  # disk full, I/O error, locked: reconnect and try once more
            if self.failing is None:
                log.error("recording %d verdicts failed: %s; retrying once", len(items), exc)
            self._reconnect()
            time.sleep(0.05)
            try:
                self._commit(rows)
            except Exception as exc2:
                self._failed(exc2)
                for it in items:
                    it.image_sha256 = None
                self._emit_not_recorded(items, f"cannot write records: {exc2}")
                return
        self._recovered()
        with self._lock:
            self.recorded += len(items)
        for it in items:
            self.stats.update(it)
            self.bus.publish("verdict", it)
        for sha, (image, w, h, seqs, shows) in imgs.items():  # after the verdicts: PNG is slow
            if not self.writer.submit(sha, image, (w, h, seqs, shows)):
                self.images_skipped += 1  # the writer is behind: records go first
                now = time.monotonic()
                if now - self._last_skip_log >= LOG_EVERY_S:
                    self._last_skip_log = now
                    log.warning(
                        "image writer behind: %d evidence images not kept so far",
                        self.images_skipped,
                    )

    def _commit(self, rows: list[dict[str, Any]]) -> None:
        """Held NOT_RECORDED rows first (in chunks, oldest first), then this group."""
        late = 0
        while True:
            with self._lock:
                held = self._pending[:HELD_CHUNK]
            if not held:
                break
            try:
                with self.db.transaction(self._conn) as c:
                    self.db.insert_items(c, held, outbox=self.outbox)
            except sqlite3.IntegrityError:  # a commit reported failed that had gone through
                fresh = [r for r in held if not self._row_exists(r)]
                log.warning("%d held rows were already recorded", len(held) - len(fresh))
                with self.db.transaction(self._conn) as c:
                    self.db.insert_items(c, fresh, outbox=self.outbox)
            with self._lock:
                del self._pending[: len(held)]
            late += len(held)
        if late:
            log.warning("%d NOT_RECORDED items recorded late", late)
        while True:
            with self._lock:
                amends = self._amends[:HELD_CHUNK]
            if not amends:
                break
            with self.db.transaction(self._conn) as c:
                for item_id, reason, msg in amends:
                    self._apply_amendment(c, item_id, reason, msg)
            with self._lock:
                del self._amends[: len(amends)]
            log.warning("%d amendments (PASS not delivered, now REJECT) recorded late", len(amends))
        if rows:
            with self.db.transaction(self._conn) as c:
                self.db.insert_items(c, rows, outbox=self.outbox)

    def _row_exists(self, row: dict[str, Any]) -> bool:
        q = "SELECT 1 FROM items WHERE seq = ? OR id = ?"
        return self._conn.execute(q, (row["seq"], row["id"])).fetchone() is not None

    def _apply_amendment(self, c: Any, item_id: str, reason: str, msg: dict[str, Any]) -> None:
        c.execute(
            "UPDATE items SET verdict = 'REJECT', reasons = ? WHERE id = ?",
            (json.dumps([reason]), item_id),
        )
        if self.outbox:
            c.execute(
                "INSERT INTO outbox (kind, item_id, payload, created_utc)"
                " VALUES ('result', ?, ?, ?)",
                (item_id, json.dumps(msg, separators=(",", ":")), time.time()),
            )

    def hold_amendment(self, item_id: str, reason: str, msg: dict[str, Any]) -> None:
        """A recorded PASS that must become REJECT (the PLC never got it), when the database
        refused the update: held like a NOT_RECORDED row and written on recovery, so the
        caller (the PLC's verdict thread) never waits for the disk."""
        with self._lock:
            if len(self._amends) < MAX_PENDING:
                self._amends.append((item_id, reason, msg))
            else:
                self.lost_rows += 1

    def _failed(self, exc: Exception) -> None:
        self.failing = str(exc) or type(exc).__name__
        self.alarms.raise_(
            "RECORD_FAILED", f"cannot record verdicts: {self.failing}", "critical", True
        )
        self._reconnect()

    def _recovered(self) -> None:
        if self.failing is not None:
            log.warning("records are written again (after: %s)", self.failing)
        self.failing = None
        if self.alarms.is_active("RECORD_FAILED"):
            self.alarms.clear("RECORD_FAILED")
        with self._lock:
            waiting = bool(self._pending or self._amends)
        if not waiting and not self.queue.full() and self.alarms.is_active("NOT_RECORDED"):
            self.alarms.clear("NOT_RECORDED")

    def _reconnect(self) -> None:
        try:
            self._conn.close()
        except Exception:
            pass
        try:
            self._conn = self.db.connect()
        except Exception as exc:  # the next commit fails again and says why
            log.error("reopening the database failed: %s", exc)

    def _emit_not_recorded(self, items: list[Item], why: str) -> None:
        """REJECT NOT_RECORDED now (the gate rejects, counters count); the row is held."""
        rows = []
        for it in items:
            it.verdict, it.reasons, it.image_sha256 = (
                Verdict.REJECT,
                [Reason.NOT_RECORDED.value],
                None,
            )
            rows.append(item_row(it, self.station))
        with self._lock:
            room = max(0, MAX_PENDING - len(self._pending))
            self._pending.extend(rows[:room])
            self.lost_rows += len(rows) - min(room, len(rows))
            self.not_recorded += len(items)
            self.recorded += len(items)
            total = self.not_recorded
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_S:  # a full disk must not flood the journal too
            self._last_log = now
            log.error(
                "items up to seq %d rejected NOT_RECORDED (%d so far, %d rows held): %s",
                items[-1].seq,
                total,
                len(self._pending),
                why,
            )
        self.alarms.raise_(
            "NOT_RECORDED",
            f"{total} items rejected as NOT_RECORDED, the line must not run unrecorded: {why}",
            "critical",
            True,
        )
        for it in items:
            self.stats.update(it)
            self.bus.publish("verdict", it)

    # ------------------------------------------------------------------ images

    def _link_images(
        self, done: list[tuple[str, Any, bool]], failed: list[tuple[str, Any]]
    ) -> None:
        """Writer thread: name the written files in the rows; drop what failed."""
        if failed:
            self.images_failed += len(failed)
            log.error("%d evidence images could not be written; their rows keep none", len(failed))
        if not done:
            return
        try:
            if self._link_conn is None:
                self._link_conn = self.db.connect()
            with self.db.transaction(self._link_conn) as c:
                for sha, (w, h, seqs, shows), _ in done:
                    self.db.add_image(c, sha, self.images.relpath(sha), w, h)
                    c.executemany(
                        "UPDATE items SET image_sha256 = ? WHERE seq = ?", [(sha, s) for s in seqs]
                    )
                    item_rows.link_view_images(c, sha, shows)
        except Exception as exc:  # the rows keep no image: remove the files only we wrote
            log.error("linking %d images failed: %s; their rows keep none", len(done), exc)
            self.images_failed += len(done)
            for sha, _, created in done:
                if created:
                    try:
                        self.images.path_for(sha).unlink()
                    except OSError:
                        pass
            try:
                self._link_conn.close()
            except Exception:
                pass
            self._link_conn = None

    # ------------------------------------------------------------------ shutdown

    def close(self) -> None:
        try:
            self.queue.put(_STOP, timeout=30)
        except queue.Full:
            log.error("the recorder did not drain its backlog in 30 s")
        self._thread.join(30)
        self.writer.close()
        with self._lock:
            waiting = bool(self._pending or self._amends)
        if waiting:  # a last try for the NOT_RECORDED rows
            try:
                self._commit([])
            except Exception as exc:
                with self._lock:
                    n = len(self._pending)
                    seqs = [r["seq"] for r in self._pending]
                log.error(
                    "%d NOT_RECORDED items (seq %d..%d) could not be written at shutdown: %s",
                    n,
                    min(seqs),
                    max(seqs),
                    exc,
                )
        if self.lost_rows:
            log.error("%d NOT_RECORDED rows were beyond the held limit", self.lost_rows)
        for conn in (self._conn, self._link_conn):
            if conn is not None:
                try:
                    conn.close()
                except Exception:
                    pass
