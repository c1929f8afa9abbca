"""What the HMI shows, kept up to date from the pipeline's bus.

The hub subscribes on its own bus thread (bounded queue: a slow web server never
stalls the line) and keeps the last items, rejects, scan grades, alarms, PackML
state and MES jobs. The JSON snapshot sent to browsers is rebuilt at most a few
times a second however many clients listen, so 50 touch panels cost the line
what one does.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict, deque
from typing import Any

import cv2

from edge.domain import Item, Verdict
from edge.line.views import evidence_image, view_offsets
from edge.recipes.products import ProductMaster
from edge.store.deviations import Deviations

SNAPSHOT_MIN_INTERVAL_S = 0.25
KEEP_FRAMES = 6
REJECTS = 8
GRADES = 120
PRODUCT_NAME_TTL_S = 30.0


def item_view(item: Item) -> dict[str, Any]:
    """The parts of a final item the HMI draws (boxes, codes, verdict, reasons); a multi-view
    item's views side by side in one picture, each finding's box moved onto its view."""
    img = evidence_image(item)
    h, w = img.shape[:2] if img is not None else (0, 0)
    findings = [f.to_dict() for f in item.findings]
    if item.views is not None:
        offsets = view_offsets(item)
        for f in findings:
            dx = offsets.get(f.get("view", ""), 0)
            if dx and "bbox" in f:
                f["bbox"] = [f["bbox"][0] + dx, *f["bbox"][1:]]
    out = {
        "seq": item.seq,
        "id": item.id,
        "verdict": item.verdict.value,
        "reasons": list(item.reasons),
        "findings": findings,
        "codes": [
            {"text": c.text, "grade": c.grade, "bbox": list(c.bbox) if c.bbox else None}
            for c in item.codes
        ],
        "width": int(w),
        "height": int(h),
        "image": item.image_sha256,
        "latency_ms": round(item.latency_ms, 1) if item.latency_ms is not None else None,
        "utc": item.wall_trigger,
    }
    if item.views is not None:
        out["views"] = list(item.views)
    return out


class Hub:
    def __init__(self, appliance: Any):
        self.app = appliance
        self.pipeline = appliance.pipeline
        self._lock = threading.Lock()
        self.version = 0
        self.last: dict[str, Any] | None = None
        self._frames: OrderedDict[int, Any] = OrderedDict()  # seq -> BGR image
        self._jpeg: OrderedDict[int, bytes] = OrderedDict()
        self.rejects: deque[dict[str, Any]] = deque(maxlen=REJECTS)
        self.grades: deque[tuple[int, float]] = deque(maxlen=GRADES)
        self.state: str | None = None
        self.jobs: list[dict[str, Any]] = []
        self.changeover: dict[str, Any] | None = None
        self._products: dict[str, tuple[float, str | None]] = {}  # gtin -> (when, name)
        self._snap: tuple[int, float, str] = (-1, 0.0, "{}")
        self._snap_lock = threading.Lock()
        self.closed = False
        self._seed_rejects()
        self.sub = self.pipeline.bus.subscribe(
            ["verdict", "alarm", "state", "batch", "job"], self._on_event, name="web", maxsize=2000
        )

    def _seed_rejects(self) -> None:
        """After a restart the gallery shows the last recorded rejects, not nothing."""
        try:
            rows = self.pipeline.db.items("verdict = 'REJECT'", limit=REJECTS)
        except Exception:
            return
        for r in rows:
            self.rejects.append(
                {
                    "seq": r["seq"],
                    "id": r["id"],
                    "reasons": r["reasons"],
                    "image": r["image_sha256"],
                    "utc": r["trigger_utc"],
                    "findings": r["findings"],
                }
            )

    # ------------------------------------------------------------------ bus side

    def _on_event(self, topic: str, ev: Any) -> None:
        with self._lock:
            if topic == "verdict":
                self._on_item(ev)
            elif topic == "state":
                self.state = str(ev.get("state") if isinstance(ev, dict) else ev)
            elif topic == "job" and isinstance(ev, dict) and ev.get("lot"):
                self.jobs = [j for j in self.jobs if j.get("lot") != ev["lot"]][-4:] + [ev]
            elif topic == "batch" and isinstance(ev, dict) and ev.get("event") == "started":
                self.jobs = [j for j in self.jobs if j.get("lot") != ev.get("lot")]
            elif topic == "batch" and isinstance(ev, dict) and ev.get("event") == "changeover":
                self.changeover = ev  # the touchscreen shows its phase and challenge units
            self.version += 1

    def _on_item(self, item: Item) -> None:
        view = item_view(item)
        image = evidence_image(item)
        if image is not None:
            # the live view: an item whose image came with it (a separate web process gets
            # a few frames per second, every item's verdict and counters nonetheless)
            self.last = view
            self._frames[item.seq] = image
            while len(self._frames) > KEEP_FRAMES:
                self._frames.popitem(last=False)
        if item.verdict is Verdict.REJECT:
            self.rejects.appendleft(
                {k: view[k] for k in ("seq", "id", "reasons", "image", "utc", "findings")}
            )
        for c in item.codes:
            if c.grade is not None:
                self.grades.append((item.seq, round(float(c.grade), 2)))

    # ------------------------------------------------------------------ web side

    def frame_jpeg(self, seq: int) -> bytes | None:
        with self._lock:
            jpg = self._jpeg.get(seq)
            img = self._frames.get(seq) if jpg is None else None
        if jpg is not None:
            return jpg
        if img is None:
            return None
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
        if not ok:
            return None
        data = buf.tobytes()
        with self._lock:
            self._jpeg[seq] = data
            while len(self._jpeg) > KEEP_FRAMES:
                self._jpeg.popitem(last=False)
        return data

    def snapshot(self) -> dict[str, Any]:
        p = self.pipeline
        b = p.batch
        with self._lock:
            last = self.last
            rejects = list(self.rejects)
            grades = list(self.grades)
            state = self.state
            jobs = list(self.jobs)
            changeover = self.changeover
        stats = p.stats.snapshot()
        stamp = getattr(p, "stamp", None)
        return {
            "t": time.time(),
            "station": p.cfg.station.id,
            "recipe": stamp.name if stamp else p.recipe.name,
            "recipe_version": stamp.version if stamp else None,
            "product": self._product_name(b.gtin if b else None),
            "changeover": changeover,
            "state": state or ("EXECUTE" if b else "IDLE"),
            "state_source": "packml" if state else "derived",
            "batch": {"id": b.id, "lot": b.lot, "gtin": b.gtin, "expiry": b.expiry} if b else None,
            "stats": stats,
            "last": last,
            "rejects": rejects,
            "grades": grades,
            "alarms": [a.to_dict() for a in p.alarms.active()],
            "deviations": _open_deviations(p, b.id if b else None),
            "jobs": jobs,
            "web_dropped": self.sub.dropped,
        }

    def _product_name(self, gtin: str | None) -> str | None:
        """The approved product's name of the running batch (looked up every 30 s at most)."""
        if not gtin:
            return None
        now = time.monotonic()
        at, name = self._products.get(gtin, (-1e9, None))
        if now - at > PRODUCT_NAME_TTL_S:
            try:
                product = ProductMaster(self.pipeline.db).approved(gtin)
                name = product.name if product else None
            except Exception:  # a product the web cannot read is shown by GTIN, never a crash
                name = None
            self._products[gtin] = (now, name)
        return name

    def snapshot_json(self) -> tuple[int, str]:
        """(version, JSON), rebuilt at most every SNAPSHOT_MIN_INTERVAL_S."""
        now = time.monotonic()
        with self._snap_lock:
            ver, at, text = self._snap
            if ver != self.version and now - at >= SNAPSHOT_MIN_INTERVAL_S:
                v = self.version
                text = json.dumps(self.snapshot(), separators=(",", ":"), default=str)
                self._snap = (v, now, text)
                return v, text
            return ver, text

    def touch(self) -> None:
        """Something changed outside the bus (e.g. an acknowledgement): push it."""
        with self._lock:
            self.version += 1
        with self._snap_lock:
            self._snap = (self._snap[0], 0.0, self._snap[2])

    def close(self) -> None:
        self.closed = True


def _open_deviations(pipeline: Any, batch: str | None) -> list[dict[str, Any]]:
    """The batch's deviations not yet investigated, newest first (for the HMI)."""
    if batch is None:
        return []
    try:
        return Deviations(pipeline.db).unresolved(batch, limit=5)
    except Exception:  # an older database, or a busy one: the HMI shows the rest
        return []
