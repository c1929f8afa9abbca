"""Login attempts: a budget per client address, and lockouts per account *and* client.

Two limits, both over a sliding window of `WINDOW_S`:

* a client (its address, or the one a trusted proxy forwards) that fails `CLIENT_MAX_FAILED`
  logins or signatures, whatever the user names, is refused every attempt until its oldest
  failure leaves the window (HTTP 429). This bounds guessing and the argon2 work it costs;
* `MAX_FAILED` wrong passwords for one account from one client lock that account *for that
  client*. A real user at another panel still logs in: someone guessing cannot lock a
  person out of the line. The lockout is audited with the client's address.

Counted for unknown user names exactly as for real ones, so the answers tell nothing about
which accounts exist. Kept in the web process's memory (it is the only one that serves
logins); bounded in size, the oldest entries go first.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque

WINDOW_S = 15 * 60.0
MAX_FAILED = 5
CLIENT_MAX_FAILED = 20
MAX_TRACKED = 10_000


class LoginThrottle:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._client: OrderedDict[str, deque[float]] = OrderedDict()
        self._pair: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._locked: OrderedDict[tuple[str, str], float] = OrderedDict()

    def client_wait_s(self, client: str) -> float:
        """Seconds until `client` may try again; 0 when it may now."""
        with self._lock:
            q = self._recent(self._client, client)
            if len(q) < CLIENT_MAX_FAILED:
                return 0.0
            return max(1.0, q[0] + WINDOW_S - self._clock())

    def locked(self, username: str, client: str) -> bool:
        with self._lock:
            until = self._locked.get((username, client))
            if until is None:
                return False
            if until <= self._clock():
                del self._locked[(username, client)]
                return False
            return True

    def failed(self, username: str, client: str) -> bool:
        """Count a failure; True when it locks the account for this client (just now)."""
        now = self._clock()
        with self._lock:
            self._push(self._client, client, now)
            q = self._push(self._pair, (username, client), now)
            if len(q) >= MAX_FAILED and (username, client) not in self._locked:
                self._locked[(username, client)] = now + WINDOW_S
                self._trim(self._locked)
                q.clear()
                return True
            return False

    def succeeded(self, username: str, client: str) -> None:
        with self._lock:
            self._pair.pop((username, client), None)

    # -- bounded sliding windows

    def _recent(self, d: OrderedDict, key) -> deque[float]:
        q = d.get(key) or deque()
        horizon = self._clock() - WINDOW_S
        while q and q[0] < horizon:
            q.popleft()
        return q

    def _push(self, d: OrderedDict, key, now: float) -> deque[float]:
        q = self._recent(d, key)
        q.append(now)
        d[key] = q
        d.move_to_end(key)
        self._trim(d)
        return q

    @staticmethod
    def _trim(d: OrderedDict) -> None:
        while len(d) > MAX_TRACKED:
            d.popitem(last=False)
