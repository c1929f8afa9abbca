"""Refused MES commands, audited without letting a flood fill the audit trail.

Anyone who can publish on the broker can send commands the appliance refuses. Each
refusal is counted; the first `limit` in each interval get an audit row (and a log
line) of their own, the rest only a count, written as one summary row when the
interval ends. The audit trail then grows by at most `limit + 1` rows per interval
however many commands arrive.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger(__name__)

SUMMARY_ACTION = "mes.refused.summary"
SUMMARY_USER = "system"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


class RefusalLimiter:
    def __init__(
        self,
        audit: Any,
        limit: int,
        interval_s: float,
        clock: Callable[[], float] = time.time,
    ):
        self.audit = audit
        self.limit = limit
        self.interval_s = interval_s
        self.clock = clock
        self.total: Counter[str] = Counter()  # refusals by code, since start (for /metrics)
        self.not_audited = 0  # refusals only counted in a summary row
        self._lock = threading.Lock()
        self._start = clock()
        self._audited = 0
        self._held: Counter[str] = Counter()
        self._held_by: Counter[str] = Counter()

    def refused(
        self,
        user: str,
        action: str,
        code: str,
        message: str,
        new: Any = None,
    ) -> bool:
        """Count one refusal; audit it when the interval's quota allows. True if audited."""
        self.flush()
        with self._lock:
            self.total[code] += 1
            own = self._audited < self.limit
            if own:
                self._audited += 1
            else:
                self.not_audited += 1
                self._held[code] += 1
                self._held_by[user] += 1
        if not own:
            return False
        log.warning("MES command refused (%s, from %s): %s", code, user, message)
        self._record(user, action, None, new, f"{code}: {message}")
        return True

    def flush(self, force: bool = False) -> None:
        """At the end of an interval, write the summary of what was only counted."""
        now = self.clock()
        with self._lock:
            if not force and now - self._start < self.interval_s:
                return
            held, by_user = self._held, self._held_by
            start = self._start
            self._start, self._audited = now, 0
            self._held, self._held_by = Counter(), Counter()
        n = sum(held.values())
        if not n:
            return
        summary = {
            "refused": n,
            "by_code": dict(held),
            "by_user": dict(by_user.most_common(10)),
            "from": _iso(start),
            "to": _iso(now),
        }
        log.warning(
            "%d more MES commands refused from %s to %s (%s)",
            n,
            summary["from"],
            summary["to"],
            ", ".join(f"{k}: {v}" for k, v in held.items()),
        )
        self._record(
            SUMMARY_USER,
            SUMMARY_ACTION,
            None,
            summary,
            f"{n} refused MES commands beyond {self.limit} per {self.interval_s:g} s, "
            "counted and not audited one by one",
        )

    def _record(self, user: str, action: str, target: Any, new: Any, reason: str) -> None:
        if self.audit is None:
            return
        try:
            self.audit.record(user=user, action=action, target=target, new=new, reason=reason)
        except Exception as exc:  # refusing changed nothing; the count stays in /metrics
            log.error("cannot audit a refused MES command: %s", exc)
