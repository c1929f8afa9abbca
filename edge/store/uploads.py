"""Images a technician brought in: the home of the `uploads` table.

Photos from elsewhere (uploaded through the web UI, or imported from a folder on the box
with `edge images import`) are stored like the line's images, under the SHA-256 of their
pixels, and recorded here with the product they show, so the image browser can list them
beside the line's images and a per-product dataset can find them. The file name is kept
for display only; it never names a file on disk. Every intake goes through `ingest`, so
the web and the shell apply the same checks and leave the same audit entry.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from edge import untrusted_images
from edge.store import labels

if TYPE_CHECKING:
    from edge.store.audit import AuditTrail
    from edge.store.db import Database
    from edge.store.images import ImageStore

#: a product name: what a technician types and a model name may be derived from
PRODUCT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
VIAS = ("web", "import")


def check_product(product: str) -> str:
    """The product name, or ValueError with a sentence a technician can act on."""
    p = (product or "").strip().lower()
    if not PRODUCT_RE.match(p):
        raise ValueError(
            "A product name is 1 to 40 characters: lower-case letters, digits, '-' or '_'"
            f" (got {product!r})."
        )
    return p


def ingest(
    db: Database,
    store: ImageStore,
    audit: AuditTrail,
    data: bytes,
    *,
    user: str,
    product: str,
    name: str = "",
    via: str = "web",
    max_pixels: int = untrusted_images.DEFAULT_MAX_PIXELS,
) -> dict[str, Any]:
    """Check, decode and store one image from outside, record its product, audit it.

    Raises `untrusted_images.ImageRefused` (header or decode refused: 413/415) or
    ValueError (bad product) before anything is written."""
    product = check_product(product)
    if via not in VIAS:
        raise ValueError(f"unknown intake {via!r}")
    img = untrusted_images.decode(data, max_pixels)  # refused from its header first
    h, w = img.shape[:2]
    sha, rel = store.put(img)
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1][:120]
    with db.transaction() as c:
        db.add_image(c, sha, rel, w, h)
        c.execute(
            "INSERT INTO uploads (sha256, product, name, via, added_by, added_utc)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(sha256) DO UPDATE SET product = excluded.product",
            (sha, product, name, via, user, time.time()),
        )
    audit.record(
        user,
        "image.upload" if via == "web" else "image.import",
        target=sha,
        new={"width": w, "height": h, "bytes": len(data), "product": product, "name": name},
    )
    return {"sha": sha, "width": w, "height": h, "product": product, "name": name}


def search(
    db: Database,
    *,
    product: str | None = None,
    label_state: str | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int = 60,
) -> list[dict[str, Any]]:
    """Uploaded and imported images, newest first, in the image browser's row shape."""
    where, params = ["1"], []  # type: ignore[var-annotated]
    if product:
        where.append("u.product = ?")
        params.append(product)
    if label_state:
        where.append(labels.state_sql(label_state, "u.sha256"))
    if since is not None:
        where.append("u.added_utc >= ?")
        params.append(since)
    if until is not None:
        where.append("u.added_utc < ?")
        params.append(until)
    rows = db.conn.execute(
        "SELECT u.sha256, u.product, u.name, u.via, u.added_utc,"
        f" {labels.state_column('u.sha256')} AS label_state"
        " FROM uploads u WHERE " + " AND ".join(where) + " ORDER BY u.added_utc DESC LIMIT ?",
        (*params, min(max(limit, 1), 500)),
    ).fetchall()
    return [
        {
            "image_sha256": r["sha256"],
            "source": "upload",
            "product": r["product"],
            "name": r["name"],
            "via": r["via"],
            "when": r["added_utc"],
            "verdict": None,
            "reasons": [],
            "seq": None,
            "batch_id": None,
            "label_state": r["label_state"],
            "labelled": r["label_state"] is not None,
        }
        for r in rows
    ]


def products(db: Database) -> list[str]:
    """Products that uploaded images were recorded for (for the browser's pick list)."""
    return [r[0] for r in db.conn.execute("SELECT DISTINCT product FROM uploads ORDER BY 1")]


def product_of(db: Database, sha256: str) -> str | None:
    row = db.conn.execute("SELECT product FROM uploads WHERE sha256 = ?", (sha256,)).fetchone()
    return row[0] if row else None
