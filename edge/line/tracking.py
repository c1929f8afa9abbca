"""Items in flight and their deadlines: the fail-safe lives here, not in the tools.

An item is registered at its trigger as REJECT/TIMEOUT. A verdict that arrives
before the deadline replaces that default; at the deadline whatever stands is
final. Exactly one of the two happens, under one lock.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable

from edge.domain import Item, Reason, ToolResult, Verdict

log = logging.getLogger(__name__)


class Tracker:
    def __init__(
        self, on_final: Callable[[Item], None], clock: Callable[[], float] = time.monotonic
    ):
        self.on_final = on_final
        self.clock = clock
        self._inflight: dict[str, Item] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._cv = threading.Condition()
        self._stop = False
        self.late_verdicts = 0
        #: returns a reason code when a PASS must not stand (e.g. the PLC link is down)
        self.pass_guard: Callable[[Item], str | None] | None = None
        self._thread = threading.Thread(target=self._watch, name="deadlines", daemon=True)
        self._thread.start()

    def register(self, item: Item) -> None:
        """From now on the item is REJECT unless a verdict arrives before its deadline."""
        item.verdict = Verdict.REJECT
        item.reasons = [Reason.TIMEOUT.value]
        with self._cv:
            self._inflight[item.id] = item
            heapq.heappush(self._heap, (item.deadline, item.seq, item.id))
            if self._heap[0][2] == item.id:
                self._cv.notify()

    def finalize(
        self,
        item: Item,
        verdict: Verdict,
        reasons: list[str],
        results: list[ToolResult] | None = None,
    ) -> bool:
        """Replace the default with a verdict; False (and nothing changes) if it came too late."""
        if verdict is Verdict.PASS and self.pass_guard is not None:
            veto = self.pass_guard(item)
            if veto:
                verdict, reasons = Verdict.REJECT, [veto]
        now = self.clock()
        with self._cv:
            if self._inflight.get(item.id) is not item:
                self.late_verdicts += 1
                return False
            if now > item.deadline:
                # the watcher has not woken yet, but the deadline has passed: still TIMEOUT
                self._expire_locked(item, now)
                late = True
            else:
                del self._inflight[item.id]
                item.verdict = verdict
                item.reasons = list(reasons) if verdict is Verdict.REJECT else []
                if results is not None:
                    item.results = results
                item.t_final = now
                late = False
        if late:
            self.late_verdicts += 1
        self.on_final(item)
        return not late

    def fail_all(self, reason: str) -> list[Item]:
        """Make every item in flight a REJECT now (e.g. the PLC link is lost)."""
        now = self.clock()
        with self._cv:
            items = list(self._inflight.values())
            for it in items:
                del self._inflight[it.id]
                it.verdict, it.reasons, it.t_final = Verdict.REJECT, [reason], now
        for it in items:
            self.on_final(it)
        return items

    def in_flight(self) -> int:
        with self._cv:
            return len(self._inflight)

    def in_flight_before(self, seq: int) -> int:
        """Items in flight triggered before item `seq` (what a changeover waits for)."""
        with self._cv:
            return sum(1 for i in self._inflight.values() if i.seq < seq)

    def oldest_age(self) -> float:
        with self._cv:
            if not self._inflight:
                return 0.0
            return self.clock() - min(i.t_trigger for i in self._inflight.values())

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(2.0)

    # ------------------------------------------------------------------

    def _expire_locked(self, item: Item, now: float) -> None:
        del self._inflight[item.id]
        item.verdict, item.reasons, item.t_final = Verdict.REJECT, [Reason.TIMEOUT.value], now

    def _watch(self) -> None:
        while True:
            expired: list[Item] = []
            with self._cv:
                if self._stop:
                    return
                now = self.clock()
                while self._heap and self._heap[0][0] <= now:
                    _, _, item_id = heapq.heappop(self._heap)
                    item = self._inflight.get(item_id)
                    if item is not None and item.deadline <= now:
                        self._expire_locked(item, now)
                        expired.append(item)
                if not expired:
                    wait = (self._heap[0][0] - now) if self._heap else 0.5
                    self._cv.wait(timeout=min(max(wait, 0.0005), 0.5))
                    continue
            for item in expired:
                log.warning("item %s missed its deadline: REJECT TIMEOUT", item.id)
                self.on_final(item)
