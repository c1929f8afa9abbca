"""Process control in the running appliance: one SPC feed per batch, deviations recorded.

A bus subscriber of its own (bounded queue, own thread), so charting never delays a verdict.
Each final item goes to the feed of its batch (items without a batch are not charted); a new
batch starts new charts, whose limits come from that batch's first items. A deviation alert is
stored as an open deviation record, logged, counted for /metrics and published on the bus
topic `deviation` for the HMI and MQTT.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from edge.domain import Item
from edge.spc.feed import SpcFeed
from edge.spc.monitor import Deviation
from edge.store.deviations import Deviations

log = logging.getLogger(__name__)


class SpcComponent:
    name = "spc"

    def __init__(self, app: Any):
        self.pipeline = app.pipeline
        self.cfg = app.cfg
        self.store = Deviations(self.pipeline.db, getattr(app, "audit", None))
        self.feed: SpcFeed | None = None
        self.batch: str | None = None
        self.raised = 0
        self.by_measure: dict[str, int] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        self.pipeline.bus.subscribe("verdict", self._on_item, name="spc")

    def stop(self) -> None:
        pass

    def status(self) -> dict[str, Any]:
        feed = self.feed
        return {
            "up": True,
            "batch": self.batch,
            "enabled": bool(feed and feed.monitor.enabled),
            "deviations": self.raised,
            "by_measure": dict(self.by_measure),
            "notices": list(feed.monitor.notices) if feed else [],
        }

    def _on_item(self, _topic: str, item: Item) -> None:
        if not item.batch:
            return
        if item.batch != self.batch:
            recipe = self.cfg.recipes.get(item.recipe)
            self.batch = item.batch
            self.feed = SpcFeed(
                recipe.spc if recipe else None,
                self._on_deviation,
                batch=item.batch,
                first_seq=item.seq,
            )
        assert self.feed is not None
        self.feed.add(item)

    def _on_deviation(self, d: Deviation) -> None:
        try:
            rid = self.store.open(d)
        except Exception as exc:  # the alert still reaches the HMI; the record is what failed
            log.error("deviation record not written (%s %s): %s", d.measure, d.rule, exc)
            rid = None
        with self._lock:
            self.raised += 1
            self.by_measure[d.measure] = self.by_measure.get(d.measure, 0) + 1
        log.warning(
            "deviation %s: %s %s (%s) at item %s since item %s: %.4g outside [%.4g, %.4g]",
            rid,
            d.measure,
            d.rule,
            d.text,
            d.item_id,
            d.since_index,
            d.value,
            *d.limits,
        )
        self.pipeline.bus.publish("deviation", {**d.to_dict(), "record": rid})


def build(app: Any) -> SpcComponent:
    return SpcComponent(app)
