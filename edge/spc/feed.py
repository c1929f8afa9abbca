"""Feeding the SPC monitor from the line: final items back in line order, deviations out.

Inspection workers finish items out of order; control charts need line order (a run rule on a
shuffled sequence means nothing). `SpcFeed` holds early arrivals until every earlier sequence
number has come, then charts them in order. An item that never comes (none is lost: every
item is finalised, on time or by its deadline) cannot hold the feed for ever: past
`max_pending` the oldest gap is skipped and counted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from edge.domain import Item
from edge.spc.config import SpcConfig
from edge.spc.monitor import Deviation, SpcMonitor

log = logging.getLogger(__name__)


class SpcFeed:
    """Thread-safe: `add(item)` from any thread; `on_deviation` is called in line order."""

    def __init__(
        self,
        cfg: SpcConfig | None,
        on_deviation: Callable[[Deviation], None],
        *,
        batch: str | None = None,
        first_seq: int | None = None,
        max_pending: int = 1000,
    ):
        self.monitor = SpcMonitor(cfg, batch=batch)
        for n in self.monitor.notices:
            log.info("SPC: %s", n)
        self._said = len(self.monitor.notices)
        self.on_deviation = on_deviation
        self.next_seq = first_seq  # None: the first item that comes
        self.late = 0
        self.max_pending = max_pending
        self.pending: dict[int, Item] = {}
        self.skipped = 0
        self._lock = threading.Lock()

    def add(self, item: Item) -> None:
        if not self.monitor.enabled:
            return
        with self._lock:
            if self.next_seq is None:
                self.next_seq = item.seq
            if item.seq < self.next_seq:  # came after its successors were charted (or skipped)
                self.late += 1
                self._observe(item)
            else:
                self.pending[item.seq] = item
            if len(self.pending) > self.max_pending and self.next_seq not in self.pending:
                self.skipped += 1
                self.next_seq = min(self.pending)
            while self.next_seq in self.pending:
                self._observe(self.pending.pop(self.next_seq))
                self.next_seq += 1
            for n in self.monitor.notices[self._said :]:
                log.warning("SPC: %s", n)
            self._said = len(self.monitor.notices)

    def _observe(self, it: Item) -> None:
        name = it.frame.name if it.frame and it.frame.name else it.id  # as in the records
        for d in self.monitor.observe(name, it.measured(in_spec_only=True), list(it.reasons)):
            self.on_deviation(d)
