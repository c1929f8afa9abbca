"""The simulated line's serialisation system: serial numbers handed out once per GTIN, ever.

On a real line the serialisation system (level 3) hands the printer serials that were never
issued before for that GTIN (EU FMD, DSCSA), whatever happened to the line in between. The
simulator's pictures and defects are a pure function of (seed, item index), so a demo looks
the same every time it is started; its serials must not be, or a second start on the same
state directory prints the serials the registry already holds and rejects every pack as a
duplicate. So the serials come from this cursor, kept in the state directory beside the
serial registry, and go on across restarts.

The cursor is the absolute number fed to `gs1data.serial_number` (a bijection onto the
10-character serial space). A GTIN seen for the first time starts where the seeded serials
of a fresh run start, so a fresh state directory prints the same serials as before.

Serials are reserved ahead in blocks, written (atomically, fsynced) before any serial of the
block is printed: a crash skips the rest of a block, which leaves a gap in the serials, never
a repeat.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from pathlib import Path

BLOCK = 1000  # serials reserved per write while an unbounded run goes on


class SerialCursor:
    """Next serial number per GTIN, persisted in one small JSON file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def _update(self, gtin: str, fn) -> int:
        """Read, change and write the cursor of `gtin` under an exclusive file lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path.with_suffix(".lock"), "a") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            try:
                data = json.loads(self.path.read_text()) if self.path.exists() else {}
            except (OSError, ValueError) as exc:  # starting over would print issued serials
                raise ValueError(f"serial cursor {self.path} unreadable: {exc}") from exc
            old = data.get(gtin)
            new, result = fn(old if isinstance(old, int) else None)
            if new != old:
                data[gtin] = new
                tmp = self.path.with_suffix(".tmp")
                with open(tmp, "w") as f:
                    json.dump(data, f, indent=1, sort_keys=True)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            return result

    def next(self, gtin: str, default: int) -> int:
        """The first number not yet issued for `gtin` (`default` for a GTIN never seen)."""
        return self._update(gtin, lambda cur: (cur, default if cur is None else cur))

    def reserve(self, gtin: str, upto: int) -> None:
        """Mark every number below `upto` as issued (before any of them is printed)."""
        self._update(gtin, lambda cur: (max(upto, cur or 0), None))


class SerialAllocator:
    """One run's serials: number `base + i` for item i, reserved ahead of the printer."""

    def __init__(self, cursor: SerialCursor, gtin: str, default_base: int, items: int | None):
        self.cursor, self.gtin = cursor, gtin
        self.base = cursor.next(gtin, default_base)
        self._reserved = self.base
        self._items = items

    def switch(self, gtin: str, i: int, default_base: int) -> None:
        """From item i on, serials of another GTIN: the first number not issued for it."""
        nxt = self.cursor.next(gtin, default_base)
        self.gtin, self.base, self._reserved = gtin, nxt - i, nxt

    def ensure(self, i: int) -> None:
        """Reserve item i's serial (and a block ahead) before the item is rendered."""
        if self.base + i < self._reserved:
            return
        ahead = self._items if self._items is not None else i + BLOCK
        self._reserved = self.base + max(ahead, i + 1)
        self.cursor.reserve(self.gtin, self._reserved)
