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
    from edge.config import Recipe, ViewConfig

log = logging.getLogger(__name__)

#: how many final items' encoder counts are remembered to recognise a late frame of one
CLOSED_MEMORY = 512


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
    ):
        self.views = dict(views)
        self.tolerance = tolerance
        self.wait_s = wait_s
        self._new_item, self._on_open = new_item, on_open
        self._on_complete, self._on_missing = on_complete, on_missing
        self._on_unmatched = on_unmatched
        self._open: list[_Open] = []
        self._closed: deque[int] = deque(maxlen=CLOSED_MEMORY)
        self._cv = threading.Condition()
        self._stop = False
        self.unmatched = 0
        self.unmatched_by_view: dict[str, int] = dict.fromkeys(self.views, 0)
        self.missing_by_view: dict[str, int] = dict.fromkeys(self.views, 0)
        self._thread = threading.Thread(target=self._watch, name="views", daemon=True)
        self._thread.start()

    def _near(self, a: int, b: int) -> bool:
        return abs(a - b) <= self.tolerance

    def offer(self, view: str, frame: Frame) -> Item | None:
        """Attach a view's frame to its item (opening it if it is the first); the item, or
        None when the frame matches no item (counted, alarmed, dropped)."""
        key = frame.encoder - self.views[view]
        done: Item | None = None
        why = ""
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


def check_views(views: list[ViewConfig], recipe: Recipe | None) -> None:
    """Unique view names; every tool a view names is the recipe's, and every recipe tool runs
    in some view (a tool no view runs would never vouch for the item)."""
    names = [v.name for v in views]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"views: two views named {dup[0]!r}")
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
