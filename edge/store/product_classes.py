"""The defect classes a technician added for a product: the home of `product_classes`.

A new product (capsules photographed on a bench) has defects no shipped model knows. The
technician adds its classes here (audited by the caller); the labeller offers the
product's own list, a dataset version of the product freezes it into its `data.yaml`, the
candidate trained on it carries it on its card, and QA approves it with the model. A line
product starts from the taxonomy's detector classes (what its model already finds); any
other product starts empty.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge.store.db import Database

#: a class name: what a model card, a YOLO data.yaml and a recipe's class table can hold
CLASS_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def check_class(name: str) -> str:
    """The class name, or ValueError with a sentence a technician can act on."""
    c = (name or "").strip().lower()
    if not CLASS_RE.match(c):
        raise ValueError(
            "A class name is 1 to 32 characters: a lower-case letter first, then lower-case"
            f" letters, digits or '_' (got {name!r})."
        )
    return c


def added(db: Database, product: str) -> list[str]:
    """The classes added for `product`, in the order they were added."""
    rows = db.conn.execute(
        "SELECT cls FROM product_classes WHERE product = ? ORDER BY added_utc, cls", (product,)
    )
    return [r[0] for r in rows]


def add(db: Database, product: str, cls: str, by: str) -> bool:
    """Add a class to a product's list; False when it was there already."""
    with db.conn:
        cur = db.conn.execute(
            "INSERT OR IGNORE INTO product_classes (product, cls, added_by, added_utc)"
            " VALUES (?, ?, ?, ?)",
            (product, cls, by, time.time()),
        )
    return cur.rowcount == 1
