"""Several camera views of one item: frames join their item by encoder count, never by arrival.

Each view's camera is triggered by the encoder as the item passes it, so its frame carries the
encoder count of its own trigger; minus the view's `encoder_offset` that is the item's count.
A frame joins the open item whose count is within `view_tolerance_counts`; the first frame of
a count not seen yet opens the item (registered with the tracker at once: REJECT unless proven
good). An item whose views are all in is handed to the inspection workers; one whose views are
not all in by its view wait is REJECT MISSING_VIEW, naming each view that did not come.

A frame that matches no open item (its item was already final, or the view already gave a
frame for it) is counted and alarmed, and never attached to another item: the wrong item's
evidence would be worse than none.

A camera reopened on a hardware trigger starts a new count epoch (`Frame.count_epoch`): the
encoder pulsed its input while it was away and nobody counted those triggers, so its counts
no longer line up with the other views'. Its frames are then kept out until they are
re-anchored: a frame taken at the same moment as another view's (within 40 % of the pitch,
one candidate only) says by how much its count is off, and two frames in a row must say the
same before the view is trusted again. The frames used to anchor, and every item in flight
across the gap, are REJECT MISSING_VIEW for that view: never a frame judged for the wrong
item.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from edge.domain import Action, Finding, Frame, Item, Reason, Severity, ToolResult

if TYPE_CHECKING:
    from edge.config import Recipe, SimulatorSource, ViewConfig

log = logging.getLogger(__name__)

#: how many final items' encoder counts are remembered to recognise a late frame of one
CLOSED_MEMORY = 512
#: a re-anchoring frame must lie this share of the pitch from another view's frame
ANCHOR_WINDOW = 0.4
#: frames in a row that must agree on a re-anchored view's count shift
ANCHOR_CONFIRM = 2


@dataclass(slots=True)
class _Open:
    item: Item
    key: int  # the item's encoder count (the first frame's, less its view's offset)
    due: float  # monotonic: views not here by then are missing
    frames: dict[str, Frame] = field(default_factory=dict)


def missing_view_result(view: str, code: str, message: str) -> ToolResult:
    """The finding that names a view which could not vouch for the item (missing, unreadable)."""
    f = Finding("views", code, message, severity=Severity.CRITICAL, action=Action.REJECT, view=view)
    return ToolResult(tool="views", version="1", findings=[f], view=view)


class ViewMatcher:
    """Matches the views' frames to items by encoder count; owns the view-wait clock."""

    def __init__(
        self,
        views: dict[str, int],  # view name -> encoder offset, in the configured order
        *,
        tolerance: int,
        wait_s: float,
        new_item: Callable[[Frame], Item],
        on_open: Callable[[Item], None],
        on_complete: Callable[[Item], None],
        on_missing: Callable[[Item, list[str]], None],
        on_unmatched: Callable[[str, Frame, str], None],
        on_resync: Callable[[str, bool, str], None] | None = None,
    ):
        self.views = dict(views)
        self.tolerance = tolerance
        self.wait_s = wait_s
        self._new_item, self._on_open = new_item, on_open
        self._on_complete, self._on_missing = on_complete, on_missing
        self._on_unmatched = on_unmatched
        self._on_resync = on_resync
        self._anchor = _Anchors(list(self.views))
        self._open: list[_Open] = []
        self._closed: deque[int] = deque(maxlen=CLOSED_MEMORY)
        self._cv = threading.Condition()
        self._stop = False
        self.unmatched = 0
        self.unmatched_by_view: dict[str, int] = dict.fromkeys(self.views, 0)
        self.missing_by_view: dict[str, int] = dict.fromkeys(self.views, 0)
        #: frames held out while their view was re-anchored, and re-anchorings done
        self.resync_dropped: dict[str, int] = dict.fromkeys(self.views, 0)
        self.resyncs: dict[str, int] = dict.fromkeys(self.views, 0)
        self._thread = threading.Thread(target=self._watch, name="views", daemon=True)
        self._thread.start()

    def _near(self, a: int, b: int) -> bool:
        return abs(a - b) <= self.tolerance

    def offer(self, view: str, frame: Frame) -> Item | None:
        """Attach a view's frame to its item (opening it if it is the first); the item, or
        None when the frame matches no item (counted, alarmed, dropped)."""
        done: Item | None = None
        why = ""
        with self._cv:
            count, events = self._anchor.align(view, frame, self._last_key(), self.views[view])
            if count is None:
                self.resync_dropped[view] += 1
            for v, anchored, _ in events:
                self.resyncs[v] += anchored
        for v, anchored, note in events:
            if self._on_resync is not None:
                self._on_resync(v, anchored, note)
        if count is None:
            return None
        key = count - self.views[view]
        with self._cv:
            slot = next((o for o in self._open if self._near(o.key, key)), None)
            if slot is None:
                if any(self._near(k, key) for k in self._closed):
                    why = "its item is already final"
                else:
                    # the item's encoder count is its trigger's, not this camera's (the gate's
                    # deadline is reckoned from it)
                    first = frame if key == frame.encoder else replace(frame, encoder=key)
                    item = self._new_item(first)
                    item.views = {}
                    slot = _Open(item, key, item.t_trigger + self.wait_s)
                    self._open.append(slot)
                    self._on_open(item)
                    self._cv.notify()
            elif view in slot.frames:
                why = f"view {view!r} already gave a frame for item {slot.item.id}"
            if not why and slot is not None:
                slot.frames[view] = frame
                slot.item.views[view] = frame  # type: ignore[index]
                if len(slot.frames) == len(self.views):
                    self._open.remove(slot)
                    self._closed.append(slot.key)
                    done = slot.item
            if why:
                self.unmatched += 1
                self.unmatched_by_view[view] = self.unmatched_by_view.get(view, 0) + 1
        if why:
            self._on_unmatched(view, frame, why)
            return None
        if done is not None:
            done.views = {v: done.views[v] for v in self.views}  # type: ignore[index]
            done.frame = done.views[next(iter(self.views))]  # the first view's, for the records
            self._on_complete(done)
        return slot.item if slot is not None else None

    def _last_key(self) -> int | None:
        keys = [o.key for o in self._open] + list(self._closed)
        return max(keys) if keys else None

    def in_flight(self) -> int:
        with self._cv:
            return len(self._open)

    def sweep(self, now: float | None = None) -> None:
        """Give up on the items whose view wait has passed: MISSING_VIEW."""
        now = time.monotonic() if now is None else now
        late: list[tuple[Item, list[str]]] = []
        with self._cv:
            for o in [o for o in self._open if o.due <= now]:
                self._open.remove(o)
                self._closed.append(o.key)
                missing = [v for v in self.views if v not in o.frames]
                for v in missing:
                    self.missing_by_view[v] += 1
                late.append((o.item, missing))
        for item, missing in late:
            self._on_missing(item, missing)

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(2)

    def _watch(self) -> None:
        while True:
            with self._cv:
                if self._stop:
                    return
                due = min((o.due for o in self._open), default=None)
                timeout = 0.05 if due is None else max(0.0, min(due - time.monotonic(), 0.05))
                if timeout > 0:
                    self._cv.wait(timeout)
                if self._stop:
                    return
            try:
                self.sweep()
            except Exception:  # a sweep that fails must not end the watch: the tracker's
                log.exception("view sweep failed")  # deadline still rejects the item


class _Anchors:
    """Each view's count shift, and the re-anchoring of a view whose count epoch changed.

    A frame of a view being re-anchored is compared with the trusted views' frames taken
    within `ANCHOR_WINDOW` of a pitch of it: exactly one count there says the shift (none
    yet: it waits for the next trusted frame; two: no guess). `ANCHOR_CONFIRM` frames in a
    row must say the same shift. Not thread-safe: the matcher calls it under its lock."""

    def __init__(self, views: list[str]):
        self.epoch: dict[str, int | None] = dict.fromkeys(views)
        self.shift: dict[str, int] = dict.fromkeys(views, 0)
        self.anchoring: dict[str, list[int]] = {}  # view -> shifts its last frames said
        self.held: dict[str, tuple[float, int]] = {}  # view -> (time, count) awaiting a match
        self.recent: deque[tuple[float, str, int]] = deque(maxlen=64)  # (t, view, count)
        self.last: dict[str, tuple[float, int]] = {}
        #: (seconds, counts) from one frame of a trusted view to its next
        self.steps: deque[tuple[float, int]] = deque(maxlen=32)

    def pitch(self) -> tuple[float, int] | None:
        """Seconds and counts from one item to the next, from the trusted views' frames
        (the median: a lost frame's double step does not move it); None: not known yet."""
        if len(self.steps) < 3:
            return None
        return float(np.median([s for s, _ in self.steps])), int(
            np.median([c for _, c in self.steps])
        )

    def align(
        self, view: str, frame: Frame, last_key: int | None, offset: int
    ) -> tuple[int | None, list[tuple[str, bool, str]]]:
        """(the frame's count in the station's counting, or None to hold it out; events
        (view, anchored, note) when a view's re-anchoring starts or ends)."""
        events: list[tuple[str, bool, str]] = []
        seen = self.epoch[view]
        if seen is None:
            self.epoch[view] = frame.count_epoch
        elif frame.count_epoch != seen:
            self.epoch[view] = frame.count_epoch
            self.anchoring[view] = []
            self.held.pop(view, None)
            self.last.pop(view, None)
            events.append(
                (view, False, f"camera reopened (count epoch {frame.count_epoch}): re-anchoring")
            )
        if view in self.anchoring:
            if frame.image is None:  # a lost frame says nothing of the moment it belongs to
                return None, events
            self._anchor(view, frame.t_trigger, frame.encoder, last_key, offset)
            if not self._settled(view, events):
                return None, events
        count = frame.encoder + self.shift[view]
        if frame.image is None:  # a frame the camera lost: its time is not its moment's
            return count, events
        prev = self.last.get(view)
        if prev is not None and count > prev[1] and frame.t_trigger > prev[0]:
            self.steps.append((frame.t_trigger - prev[0], count - prev[1]))
        self.last[view] = (frame.t_trigger, count)
        self.recent.append((frame.t_trigger, view, count))
        pitch = self.pitch()
        for v, (t, raw) in list(self.held.items()):  # a frame that came before its moment's
            if pitch is not None and abs(t - frame.t_trigger) <= ANCHOR_WINDOW * pitch[0]:
                del self.held[v]
                self._say(v, t, raw, pitch)
                self._settled(v, events)
        return count, events

    def _settled(self, view: str, events: list[tuple[str, bool, str]]) -> bool:
        """The view's shift is settled once its last `ANCHOR_CONFIRM` frames agree."""
        said = self.anchoring[view]
        if len(said) >= ANCHOR_CONFIRM and len(set(said[-ANCHOR_CONFIRM:])) == 1:
            self.shift[view] = said[-1]
            del self.anchoring[view]
            self.held.pop(view, None)
            events.append((view, True, f"anchored: its count shifted by {self.shift[view]:+d}"))
            return True
        if len(said) > 1 and said[-1] != said[-2]:
            del said[:-1]  # they disagree: start again from this one
        return False

    def _anchor(self, view: str, t: float, raw: int, last_key: int | None, offset: int) -> None:
        pitch = self.pitch()
        if pitch is None:  # no trusted frames to anchor by yet
            return
        trusted = [v for v in self.epoch if v not in self.anchoring]
        if not trusted and last_key is not None:
            # every view lost its count: continue after the last item, by the time gone
            t_last = max((u for u, _, _ in self.recent), default=t)
            ahead = max(1, round((t - t_last) / pitch[0])) * pitch[1]
            self.anchoring[view].append(last_key + ahead + offset - raw)
            return
        if not self._say(view, t, raw, pitch):
            self.held[view] = (t, raw)  # the other views' frame of this moment may be on its way

    def _say(self, view: str, t: float, raw: int, pitch: tuple[float, int]) -> bool:
        """What the trusted frames of the same moment say of the view's shift (False: none
        there yet). Two different counts there: no guess, the view starts over."""
        window = ANCHOR_WINDOW * pitch[0]
        near = {c for u, v, c in self.recent if v != view and abs(u - t) <= window}
        if not near:
            return False
        if len(near) == 1:
            self.anchoring[view].append(near.pop() - raw)
        else:
            self.anchoring[view].clear()
        return True


def missing_reasons(missing: list[str]) -> tuple[list[str], list[ToolResult]]:
    """MISSING_VIEW and one finding per view that did not arrive."""
    results = [
        missing_view_result(v, Reason.MISSING_VIEW.value, f"view {v!r} did not arrive in time")
        for v in missing
    ]
    return [Reason.MISSING_VIEW.value], results


def evidence_image(item: Item) -> np.ndarray | None:
    """The image kept as an item's evidence: its frame's, or on a multi-view station every
    view that arrived side by side in the station's order (one file, one row, every view;
    `view_offsets` says where each view starts)."""
    if item.views is None:
        return item.frame.image if item.frame is not None else None
    imgs = [_bgr(f.image) for f in item.views.values() if f.image is not None]
    if not imgs:
        return None
    if len(imgs) == 1:
        return imgs[0]
    h = max(i.shape[0] for i in imgs)
    padded = [
        i if i.shape[0] == h else np.pad(i, ((0, h - i.shape[0]), (0, 0), (0, 0))) for i in imgs
    ]
    return np.hstack(padded)


def view_images(item: Item) -> dict[str, np.ndarray]:
    """Each arrived view's own image (BGR), kept beside the side-by-side evidence so that a
    technician can label one camera's image as that camera saw it."""
    return {name: _bgr(f.image) for name, f in (item.views or {}).items() if f.image is not None}


def view_offsets(item: Item) -> dict[str, int]:
    """Each arrived view's x offset in `evidence_image` (boxes of a view's findings move by it)."""
    out, x = {}, 0
    for name, f in (item.views or {}).items():
        if f.image is not None:
            out[name] = x
            x += f.image.shape[1]
    return out


def _bgr(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 3 else np.repeat(img[..., None], 3, 2)


def simulated_view(base: SimulatorSource, views: list[ViewConfig], k: int) -> SimulatorSource:
    """View k of a simulated station with `views`: where each camera looks (`look`) decides
    what the simulator renders for it, for the line's cameras and the challenge units alike."""
    update: dict[str, object] = {
        "view": k,
        "views": len(views),
        "top_view": views[-1].look == "top",
    }
    labels = [i for i, v in enumerate(views) if v.look == "label"]
    if labels:
        update["label_view"] = labels[0]
    return base.model_copy(update=update)


def check_views(views: list[ViewConfig], recipe: Recipe | None) -> None:
    """Unique view names; every tool a view names is the recipe's, and every recipe tool runs
    in some view (a tool no view runs would never vouch for the item)."""
    names = [v.name for v in views]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"views: two views named {dup[0]!r}")
    tops = [i for i, v in enumerate(views) if v.look == "top"]
    if tops and tops != [len(views) - 1]:
        raise ValueError(
            "views: one camera may look down on the item (`look: top`), and it is the last view"
        )
    labels = [i for i, v in enumerate(views) if v.look == "label"]
    if len(labels) > 1 or labels[:1] == [0]:
        raise ValueError(
            "views: one camera may look close up at the label (`look: label`), not the first"
        )
    if recipe is None:
        return
    have = [t.name or t.type for t in recipe.tools]
    used: set[str] = set()
    for i, v in enumerate(views):
        wanted = have if v.tools is None else v.tools
        bad = [t for t in wanted if t not in have]
        if bad:
            raise ValueError(
                f"views.{i}.tools: {bad} not in recipe {recipe.name!r} (its tools: {have})"
            )
        used.update(wanted)
    types = {t.name or t.type: t.type for t in recipe.tools}
    for name in have:  # a serial read by two cameras would be its own duplicate
        runs = [v.name for v in views if v.tools is None or name in v.tools]
        if types[name] == "barcode" and len(runs) > 1:
            raise ValueError(
                f"views: the code tool {name!r} runs in {runs}: name it in the one view that "
                "faces the code (each serial is registered once per item)"
            )
    idle = [t for t in have if t not in used]
    if idle:
        raise ValueError(f"views: recipe {recipe.name!r} tools {idle} run in no view")
