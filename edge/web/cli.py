"""`edge users ...`, `edge audit ...`, `edge images import` and `edge report`: users, the audit
trail, photos brought in from a folder on the box, and batch records, from the shell.

The first admin is created here (the web UI has no default account); the password
is always prompted for, never taken from an option or a default.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import typer

users_app = typer.Typer(no_args_is_help=True, help="Users and roles of the web UI.")
audit_app = typer.Typer(no_args_is_help=True, help="The hash-chained audit trail.")
images_app = typer.Typer(no_args_is_help=True, help="Photos for labelling and training.")

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config (default: embedded demo)")
StateOpt = typer.Option(None, "--state-dir", help="records folder (default: from the config)")


def _stores(config: Path | None, state_dir: Path | None) -> tuple[Any, Any]:
    from edge.config import ConfigError, load_config
    from edge.store.audit import AuditTrail
    from edge.store.db import Database

    if state_dir is None:
        try:
            state_dir = Path(load_config(config).records.state_dir)
        except ConfigError as exc:
            typer.echo(f"config error: {exc}", err=True)
            raise typer.Exit(2) from None
    db = Database(Path(state_dir) / "edge.db")
    return db, AuditTrail(db)


def _shell_user() -> str:
    return f"shell:{getpass.getuser()}"


@users_app.command("create")
def users_create(
    username: str = typer.Argument(...),
    role: str = typer.Option(..., help="operator | technician | qa | admin"),
    full_name: str = typer.Option(..., "--name", help="full name, as it appears in signatures"),
    reason: str = typer.Option("initial set-up", help="why (goes into the audit trail)"),
    config: Path | None = ConfigOpt,
    state_dir: Path | None = StateOpt,
) -> None:
    """Create a user; the password is prompted for (twice)."""
    from edge.web.auth import UserStore

    db, audit = _stores(config, state_dir)
    password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        UserStore(db, audit).create(username, full_name, role, password, _shell_user(), reason)
    except ValueError as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"user {username} created ({role})")


@users_app.command("list")
def users_list(config: Path | None = ConfigOpt, state_dir: Path | None = StateOpt) -> None:
    from edge.web.auth import UserStore

    db, audit = _stores(config, state_dir)
    for u in UserStore(db, audit).list():
        flag = " (disabled)" if u["disabled"] else ""
        typer.echo(f"{u['username']:<20} {u['role']:<11} {u['full_name']}{flag}")


@users_app.command("disable")
def users_disable(
    username: str = typer.Argument(...),
    reason: str = typer.Option(..., help="why (goes into the audit trail)"),
    enable: bool = typer.Option(False, "--enable", help="enable instead"),
    config: Path | None = ConfigOpt,
    state_dir: Path | None = StateOpt,
) -> None:
    from edge.web.auth import UserStore

    db, audit = _stores(config, state_dir)
    try:
        UserStore(db, audit).set_disabled(username, not enable, _shell_user(), reason)
    except ValueError as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"user {username} {'enabled' if enable else 'disabled'}")


@audit_app.command("verify")
def audit_verify(config: Path | None = ConfigOpt, state_dir: Path | None = StateOpt) -> None:
    """Check every entry's hash and link; exit 1 when any entry was edited or deleted."""
    _db, audit = _stores(config, state_dir)
    ok, problems = audit.verify()
    n = len(audit.entries())
    if ok:
        typer.echo(f"audit trail OK: {n} entries, chain intact")
        return
    typer.echo(f"audit trail BROKEN ({n} entries):", err=True)
    for p in problems:
        typer.echo(f"  {p}", err=True)
    raise typer.Exit(1)


@audit_app.command("export")
def audit_export(
    out: Path = typer.Option(..., "--out", "-o", help="file to write"),
    fmt: str = typer.Option("csv", "--format", help="csv | json"),
    since: str | None = typer.Option(None, help="UTC ISO time"),
    until: str | None = typer.Option(None, help="UTC ISO time"),
    config: Path | None = ConfigOpt,
    state_dir: Path | None = StateOpt,
) -> None:
    _db, audit = _stores(config, state_dir)
    rows = audit.entries(since=since, until=until)
    if fmt == "csv":
        out.write_text(audit.export_csv(rows), encoding="utf-8")
    elif fmt == "json":
        out.write_text(audit.export_json(rows), encoding="utf-8")
    else:
        typer.echo("--format is csv or json", err=True)
        raise typer.Exit(2)
    ok, _ = audit.verify()
    typer.echo(json.dumps({"out": str(out), "entries": len(rows), "chain_ok": ok}))


def report(
    batch: str = typer.Argument(..., help="batch id (as on the reports page)"),
    pdf: Path | None = typer.Option(None, "--pdf", help="write the batch record as PDF here"),
    csv: Path | None = typer.Option(None, "--csv", help="write the batch record as CSV here"),
    as_json: bool = typer.Option(False, "--json", help="print the record as JSON"),
    config: Path | None = ConfigOpt,
    state_dir: Path | None = StateOpt,
) -> None:
    """The batch record of one batch: PDF (charts included), CSV or JSON, without a server."""
    from edge.config import ConfigError, load_config
    from edge.store.audit import AuditTrail
    from edge.store.db import Database
    from edge.web import batch_record

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        typer.echo(f"config error: {exc}", err=True)
        raise typer.Exit(2) from None
    folder = Path(state_dir if state_dir is not None else cfg.records.state_dir)
    if not (folder / "edge.db").is_file():
        typer.echo(f"no records in {folder} (edge.db missing)", err=True)
        raise typer.Exit(2)
    db = Database(folder / "edge.db")
    b = db.batch(batch)
    try:
        rep = batch_record.build(
            db,
            AuditTrail(db),
            batch,
            station=cfg.station.id,
            deadline=batch_record.deadline_ms(cfg, b["recipe"] if b else None),
        )
    except batch_record.NoBatch as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    written: dict[str, str] = {}
    if pdf is not None:
        from edge.web.report_pdf import render_pdf

        pdf.write_bytes(render_pdf(rep))
        written["pdf"] = str(pdf)
    if csv is not None:
        from edge.web.reports import report_csv

        csv.write_text(report_csv(rep), encoding="utf-8")
        written["csv"] = str(csv)
    if as_json:
        typer.echo(json.dumps(rep, indent=2, default=str))
    else:
        c = rep["counts"]
        typer.echo(
            json.dumps(
                {
                    "batch": batch,
                    "lot": rep["batch"]["lot"],
                    "inspected": c["inspected"],
                    "rejected": c["rejected"],
                    "challenge": rep["challenge"]["status"],
                    **written,
                }
            )
        )


#: what `edge images import` reads from a folder (the content decides; this skips the rest)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


@images_app.command("import")
def images_import(
    folder: Path = typer.Argument(..., help="folder of photos (read recursively)"),
    product: str = typer.Option(..., "--product", "-p", help="the product the photos show"),
    config: Path | None = ConfigOpt,
    state_dir: Path | None = StateOpt,
) -> None:
    """Import photos for a product: each checked as a web upload is (format by content,
    10 MB, `web.max_image_pixels`), stored under its SHA-256, audited; exit 1 if any was
    refused."""
    from edge.config import ConfigError, load_config
    from edge.store import uploads
    from edge.store.images import ImageStore
    from edge.untrusted_images import ImageRefused
    from edge.web.uploads import MAX_UPLOAD

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        typer.echo(f"config error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        product = uploads.check_product(product)
    except ValueError as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(2) from None
    if not folder.is_dir():
        typer.echo(f"refused: {folder} is not a folder", err=True)
        raise typer.Exit(2)
    db, audit = _stores(config, state_dir)
    store = ImageStore(Path(state_dir or cfg.records.state_dir) / "images")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    stored, refused = 0, []
    for p in files:
        if p.is_symlink() or not p.is_file():
            refused.append(f"{p}: not a regular file")
            continue
        if p.stat().st_size > MAX_UPLOAD:
            refused.append(f"{p}: larger than {MAX_UPLOAD // (1024 * 1024)} MB")
            continue
        try:
            uploads.ingest(
                db,
                store,
                audit,
                p.read_bytes(),
                user=_shell_user(),
                product=product,
                name=p.name,
                via="import",
                max_pixels=int(cfg.web.max_image_pixels),
            )
            stored += 1
        except ImageRefused as exc:
            refused.append(f"{p}: {exc}")
    for line in refused:
        typer.echo(f"refused {line}", err=True)
    typer.echo(json.dumps({"product": product, "imported": stored, "refused": len(refused)}))
    if refused:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
    app.add_typer(users_app, name="users")
    app.add_typer(audit_app, name="audit")
    app.add_typer(images_app, name="images")
