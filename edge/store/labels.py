"""Box labels drawn by technicians: one row per image, the home of the `labels` table.

A label is the technician's statement of what is on an image (class and box, in image
pixels). The labeller writes it here; a dataset version freezes every label at once
(`edge.train.dataset_build`), so the rows are read in a fixed order.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # db.py imports the table modules; typing only, no import cycle
    from edge.store.db import Database


class LabelledImage(NamedTuple):
    """A labelled image as dataset building needs it: boxes and the image's size."""

    sha256: str
    boxes: list[dict[str, Any]]
    width: int
    height: int


def get(db: Database, sha256: str) -> dict[str, Any] | None:
    """The saved label of an image (boxes decoded), or None when it has none yet."""
    row = db.conn.execute("SELECT * FROM labels WHERE image_sha256 = ?", (sha256,)).fetchone()
    if row is None:
        return None
    return {**dict(row), "boxes": json.loads(row["boxes"])}


def save(db: Database, sha256: str, boxes: list[dict[str, Any]], by: str) -> list | None:
    """Write an image's label (replacing any earlier one); returns the boxes it replaced,
    for the audit trail's old value."""
    old = db.conn.execute("SELECT boxes FROM labels WHERE image_sha256 = ?", (sha256,)).fetchone()
    with db.transaction() as c:
        c.execute(
            "INSERT INTO labels (image_sha256, boxes, updated_by, updated_utc) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(image_sha256) DO UPDATE SET boxes = excluded.boxes,"
            " updated_by = excluded.updated_by, updated_utc = excluded.updated_utc",
            (sha256, json.dumps(boxes), by, time.time()),
        )
    return json.loads(old[0]) if old else None


def count(db: Database) -> int:
    return int(db.conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0])


def labelled_images(db: Database) -> list[LabelledImage]:
    """Every labelled image with its size, in SHA-256 order (a dataset is reproducible)."""
    rows = db.conn.execute(
        "SELECT l.image_sha256, l.boxes, i.width, i.height FROM labels l"
        " JOIN images i ON i.sha256 = l.image_sha256 ORDER BY l.image_sha256"
    ).fetchall()
    return [LabelledImage(sha, json.loads(boxes), int(w), int(h)) for sha, boxes, w, h in rows]


#: what the browser can ask of an image's label: boxes drawn, marked good (a saved label
#: with no boxes: a negative example for training), or no label yet
LABEL_STATES = ("labelled", "good", "unlabelled")


def state_column(sha_col: str) -> str:
    """SQL for an image's label state ('labelled', 'good' or NULL) by its SHA-256 column."""
    return (
        "(SELECT CASE WHEN l.boxes = '[]' THEN 'good' ELSE 'labelled' END FROM labels l"
        f" WHERE l.image_sha256 = {sha_col})"
    )


def state_sql(state: str, sha_col: str) -> str:
    """A WHERE condition for one of `LABEL_STATES` (no parameters: safe to join)."""
    if state not in LABEL_STATES:
        raise ValueError(f"label state is one of {', '.join(LABEL_STATES)}")
    if state == "unlabelled":
        return f"NOT EXISTS (SELECT 1 FROM labels l WHERE l.image_sha256 = {sha_col})"
    op = "=" if state == "good" else "<>"
    return f"EXISTS (SELECT 1 FROM labels l WHERE l.image_sha256 = {sha_col} AND l.boxes {op} '[]')"


def mark_good(db: Database, shas: list[str], by: str) -> dict[str, list | None]:
    """Mark images good (no defects) in one transaction; returns each one's earlier boxes
    (None where it had no label), for the audit trail."""
    old: dict[str, list | None] = {}
    with db.transaction() as c:
        for sha in shas:
            row = c.execute("SELECT boxes FROM labels WHERE image_sha256 = ?", (sha,)).fetchone()
            old[sha] = json.loads(row[0]) if row else None
            c.execute(
                "INSERT INTO labels (image_sha256, boxes, updated_by, updated_utc)"
                " VALUES (?, '[]', ?, ?) ON CONFLICT(image_sha256) DO UPDATE SET boxes = '[]',"
                " updated_by = excluded.updated_by, updated_utc = excluded.updated_utc",
                (sha, by, time.time()),
            )
    return old
