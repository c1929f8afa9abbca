"""`edge records verify`: are the records on this state directory whole and consistent?

Checks, each problem reported with the row or file it concerns:
- SQLite's own integrity check of the databases (`edge.db`, `serials.db`);
- the audit trail's hash chain (the same walk as `edge audit verify`);
- every image a row references (items, their views, images, labels) exists and its pixels
  hash to its name (content-addressed PNGs);
- the outbox rows still waiting form one gap-free run of sequence numbers (rows leave
  only after the broker's PUBACK, in order);
- no temporary image files are left (a write that failed or crashed half-way).

It opens the files without migrating them and changes nothing. Run it on a stopped
appliance (a running one may have a write in progress: a temporary file or an image not
yet linked). Exit 0 only when everything holds.
"""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path
from typing import Any

import typer

from edge.store.images import ImageStore


class _ReadDb:
    """The little of `Database` the audit walk needs, without migrations or writes."""

    def __init__(self, path: Path):
        self.path = path

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        return conn


def integrity(path: Path) -> list[str]:
    try:
        conn = sqlite3.connect(path, timeout=30.0)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check")]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return [f"{path.name}: cannot be checked: {exc}"]
    return [] if rows == ["ok"] else [f"{path.name}: integrity: {r}" for r in rows]


def audit_chain(path: Path) -> list[str]:
    from edge.store.audit import AuditTrail

    trail = AuditTrail.__new__(AuditTrail)  # reuse its walk; its constructor writes triggers
    trail.db = _ReadDb(path)  # type: ignore[assignment]
    try:
        _ok, problems = trail.verify()
    except sqlite3.Error as exc:
        return [f"audit: cannot be read: {exc}"]
    return [f"audit: {p}" for p in problems]


def images(conn: sqlite3.Connection, store: ImageStore) -> list[str]:
    problems: list[str] = []
    seen: dict[str, str | None] = {}  # sha -> problem (None: fine)

    def check(sha: str) -> str | None:
        if sha not in seen:
            if store.get(sha) is None:
                seen[sha] = f"file {store.relpath(sha)} missing"
            elif not store.verify(sha):
                seen[sha] = f"file {store.relpath(sha)} does not hash to its name"
            else:
                seen[sha] = None
        return seen[sha]

    known = set()
    for r in conn.execute("SELECT sha256, path FROM images ORDER BY created_utc"):
        known.add(r["sha256"])
        p = check(r["sha256"])
        if p:
            problems.append(f"images row {r['sha256']}: {p}")

    def referenced(sha: str) -> str | None:
        """What is wrong with an image a record names (its file, or a missing images row)."""
        p = check(sha)
        if sha not in known:
            p = "no images row" + (f", {p}" if p else "")
        return p

    for r in conn.execute(
        "SELECT seq, id, image_sha256 FROM items WHERE image_sha256 IS NOT NULL ORDER BY seq"
    ):
        sha = r["image_sha256"]
        p = referenced(sha)
        if p:
            problems.append(f"items seq {r['seq']} ({r['id']}): image {sha}: {p}")
    try:  # each view's own image of a multi-view item
        shots = conn.execute(
            "SELECT seq, view, image_sha256 FROM item_view_images ORDER BY seq, pos"
        ).fetchall()
    except sqlite3.OperationalError:
        shots = []
    for r in shots:
        sha = r["image_sha256"]
        p = referenced(sha)
        if p:
            problems.append(f"items seq {r['seq']} view {r['view']}: image {sha}: {p}")
    try:
        labels = conn.execute("SELECT image_sha256 FROM labels ORDER BY image_sha256").fetchall()
    except sqlite3.OperationalError:
        labels = []
    for r in labels:
        p = check(r["image_sha256"])
        if p:
            problems.append(f"labels row {r['image_sha256']}: {p}")
    return problems


def outbox(conn: sqlite3.Connection) -> list[str]:
    seqs = [int(r[0]) for r in conn.execute("SELECT seq FROM outbox ORDER BY seq")]
    problems = []
    for a, b in itertools.pairwise(seqs):
        if b != a + 1:
            gap = f"{a + 1}" if b == a + 2 else f"{a + 1}..{b - 1}"
            problems.append(f"outbox seq {gap} missing between rows {a} and {b}")
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    if seqs and row is not None and seqs[-1] > int(row[0]):
        problems.append(f"outbox seq {seqs[-1]} is beyond the sequence counter {row[0]}")
    return problems


def temp_files(state: Path, store: ImageStore) -> list[str]:
    found = set(store.temp_files()) | set(state.glob("*.tmp")) | set(state.glob(".*.tmp"))
    return [f"temporary file left: {p.relative_to(state)}" for p in sorted(found)]


def verify(state_dir: str | Path) -> tuple[list[str], dict[str, Any]]:
    """All problems found, and what was checked (counts)."""
    state = Path(state_dir)
    db_path = state / "edge.db"
    if not db_path.is_file():
        return [f"no database at {db_path}"], {}
    problems = integrity(db_path)
    if (state / "serials.db").is_file():
        problems += integrity(state / "serials.db")
    problems += audit_chain(db_path)
    store = ImageStore.__new__(ImageStore)  # never creates the folder it checks
    store.root, store.fsync = state / "images", False
    conn = _ReadDb(db_path).connect()
    try:
        problems += images(conn, store)
        problems += outbox(conn)
        counts = {
            "items": conn.execute("SELECT COUNT(*) FROM items").fetchone()[0],
            "images": conn.execute("SELECT COUNT(*) FROM images").fetchone()[0],
            "outbox": conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0],
            "audit": conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0],
        }
    except sqlite3.Error as exc:
        problems.append(f"edge.db: cannot be read: {exc}")
        counts = {}
    finally:
        conn.close()
    problems += temp_files(state, store)
    return problems, counts


# ----------------------------------------------------------------------------- command

records_app = typer.Typer(no_args_is_help=True, help="The line's records on disk.")


@records_app.command("verify")
def verify_cmd(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config"),
    state_dir: Path | None = typer.Option(
        None, "--state-dir", help="records folder (default: from the config)"
    ),
) -> None:
    """Database integrity, audit chain, images, outbox sequence, temporary files."""
    if state_dir is None:
        from edge.config import ConfigError, load_config

        try:
            state_dir = Path(load_config(config).records.state_dir)
        except ConfigError as exc:
            typer.echo(f"config error: {exc}", err=True)
            raise typer.Exit(2) from None
    problems, counts = verify(state_dir)
    for p in problems:
        typer.echo(p)
    checked = ", ".join(f"{v} {k}" for k, v in counts.items())
    if problems:
        typer.echo(f"records verify: {len(problems)} problem(s) in {state_dir} ({checked})")
        raise typer.Exit(1)
    typer.echo(f"records verify: OK ({checked})")


def register(app: typer.Typer) -> None:
    app.add_typer(records_app, name="records")
