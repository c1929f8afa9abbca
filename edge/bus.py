"""In-process event bus the outputs subscribe to (PLC, MQTT, HMI, metrics).

Each subscriber has its own thread and bounded queue, so a slow output never
stalls the pipeline; a full queue is counted and reported, never silent.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: Topics: "verdict" (a final, recorded Item), "alarm" (Alarm), "state" (PackML state),
#: "batch" (batch started/stopped dict), "trend" (maintenance trend sample).
Handler = Callable[[str, Any], None]


class Subscription:
    def __init__(self, name: str, handler: Handler, maxsize: int):
        self.name = name
        self.handler = handler
        self.queue: queue.Queue[tuple[str, Any] | None] = queue.Queue(maxsize)
        self.dropped = 0
        self.errors = 0
        self.thread = threading.Thread(target=self._run, name=f"bus-{name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            ev = self.queue.get()
            if ev is None:
                return
            try:
                self.handler(*ev)
            except Exception:
                self.errors += 1
                log.exception("subscriber %s failed on %s", self.name, ev[0])

    def offer(self, topic: str, event: Any) -> None:
        try:
            self.queue.put_nowait((topic, event))
        except queue.Full:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.error("subscriber %s is behind: %d events dropped", self.name, self.dropped)

    def close(self, timeout: float = 5.0) -> None:
        try:
            self.queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self.thread.join(timeout)


class Bus:
    def __init__(self) -> None:
        self._subs: dict[str, list[Subscription]] = defaultdict(list)
        self._sync: dict[str, list[Handler]] = defaultdict(list)
        self._lock = threading.Lock()
        self._all: list[Subscription] = []

    def subscribe(
        self, topics: str | list[str], handler: Handler, *, name: str, maxsize: int = 10000
    ) -> Subscription:
        sub = Subscription(name, handler, maxsize)
        with self._lock:
            for t in [topics] if isinstance(topics, str) else topics:
                self._subs[t].append(sub)
            self._all.append(sub)
        return sub

    def subscribe_sync(self, topics: str | list[str], handler: Handler) -> None:
        """For tiny, non-blocking handlers only (counters): runs on the publisher's thread."""
        with self._lock:
            for t in [topics] if isinstance(topics, str) else topics:
                self._sync[t].append(handler)

    def publish(self, topic: str, event: Any) -> None:
        for h in self._sync.get(topic, ()):
            try:
                h(topic, event)
            except Exception:
                log.exception("sync subscriber failed on %s", topic)
        for sub in self._subs.get(topic, ()):
            sub.offer(topic, event)

    def subscriptions(self) -> list[Subscription]:
        return list(self._all)

    def close(self) -> None:
        for sub in self._all:
            sub.close()
