"""Starts and stops of the appliance in the audit trail, and what they did to the open batch.

A restart on a state directory with a batch open continues that batch (the serials, the
sequence and the counts go on). That is right for a plant, but it must not be silent: the
batch record has to show that the appliance stopped and started again inside it, and
whether the stop was clean. A batch the config starts at start-up (ending the one that was
open) is audited as well, like one started from the HMI or MES. The entries name the batch
as their target, so the batch report lists them.
"""

from __future__ import annotations

from typing import Any

from edge.domain import BatchState

SYSTEM = "system"  # the appliance itself, not a person


def _batch(b: BatchState | None) -> dict[str, Any] | None:
    return {"batch": b.id, "lot": b.lot, "gtin": b.gtin, "expiry": b.expiry} if b else None


def _previous_stop(audit: Any) -> str:
    starts = audit.entries(action="appliance.start", limit=1, newest_first=True)
    if not starts:
        return "first start on this state directory"
    stops = audit.entries(action="appliance.stop", limit=1, newest_first=True)
    if stops and stops[0]["id"] > starts[0]["id"]:
        return "clean stop"
    return "no stop recorded (crash, power loss or kill)"


def audit_start(
    audit: Any,
    pipeline: Any,
    *,
    found: BatchState | None,
    ended: BatchState | None,
    started: str | None,
) -> None:
    """Record this start: the batch found open, and whether it resumes or the config replaced it.

    `found` is the batch open in the records at start-up; `ended` that batch when the config's
    batch replaced it, `started` the id of the config's new batch.
    """
    previous = _previous_stop(audit)
    current = pipeline.batch
    audit.record(
        SYSTEM,
        "appliance.start",
        target=current.id if current else None,
        old={"previous": previous, "open_batch": _batch(found)},
        new={"batch": _batch(current), "recipe": pipeline.recipe.name},
        reason=f"appliance started ({previous})",
    )
    if ended is not None:
        audit.record(
            "config",
            "batch.stop",
            target=ended.id,
            old={"lot": ended.lot, "state": "running"},
            new={"state": "ended"},
            reason="the config names another batch at start-up",
        )
    if started is not None and current is not None:
        audit.record(
            "config",
            "batch.start",
            target=started,
            old=_batch(ended),
            new={**(_batch(current) or {}), "recipe": pipeline.recipe.name},
            reason="batch named by the config at start-up",
        )
    elif found is not None and current is not None and current.id == found.id:
        audit.record(
            SYSTEM,
            "batch.resume",
            target=found.id,
            old={"previous": previous},
            new=_batch(found),
            reason=f"appliance restarted with this batch open ({previous}); inspection continues",
        )


def audit_stop(audit: Any, pipeline: Any) -> None:
    """Record a clean stop (its absence before the next start says the stop was not clean)."""
    b = pipeline.batch
    audit.record(
        SYSTEM,
        "appliance.stop",
        target=b.id if b else None,
        new={"batch": _batch(b), "items": pipeline.stats.snapshot().get("items")},
        reason="appliance stopped" + (f"; batch {b.id} stays open" if b else ""),
    )
