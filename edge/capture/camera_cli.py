"""`edge camera list` and `edge camera snap`: find a GenICam camera and take one frame."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

camera_app = typer.Typer(no_args_is_help=True, help="GenICam cameras (GigE Vision, USB3 Vision).")


def _fail(msg: str) -> None:
    typer.echo(msg, err=True)
    raise typer.Exit(2)


@camera_app.command("list")
def camera_list(as_json: bool = typer.Option(False, "--json", help="one JSON list")) -> None:
    """Every camera Aravis can see (GigE Vision discovery on all interfaces, USB3 Vision)."""
    from edge.capture import aravis

    try:
        cams = aravis.list_cameras()
    except aravis.CameraError as exc:
        _fail(str(exc))
        return
    if as_json:
        typer.echo(json.dumps([c.to_dict() for c in cams]))
        return
    if not cams:
        typer.echo("no camera found")
        return
    for c in cams:
        typer.echo(f"{c.serial}\t{c.vendor} {c.model}\t{c.protocol}\t{c.address}\t{c.device_id}")


@camera_app.command("snap")
def camera_snap(
    out: Path = typer.Option(..., help="image file to write (.png, .bmp, .tif, .jpg)"),
    serial: str | None = typer.Option(None, help="camera serial number"),
    user_id: str | None = typer.Option(None, help="DeviceUserID"),
    address: str | None = typer.Option(None, help="IP address (GigE Vision)"),
    pixel_format: str = typer.Option("Mono8"),
    exposure_us: float | None = typer.Option(None),
    gain: float | None = typer.Option(None),
    timeout: float = typer.Option(5.0, help="seconds to wait for the frame"),
) -> None:
    """One frame (software trigger) to a file; prints frame id, timestamp and settings."""
    import cv2
    from pydantic import ValidationError

    from edge.capture import aravis
    from edge.capture.genicam_config import GenICamSource

    try:
        cfg = GenICamSource(
            serial=serial,
            user_id=user_id,
            address=address,
            pixel_format=pixel_format,
            exposure_us=exposure_us,
            gain=gain,
        )
    except ValidationError as exc:
        _fail("; ".join(e["msg"] for e in exc.errors()))
        return
    try:
        grab, cam = aravis.snap(cfg, timeout)
    except aravis.CameraError as exc:
        _fail(str(exc))
        return
    try:
        info: dict[str, Any] = {
            "device_id": cam.device_id,
            "serial": cam.serial,
            "frame_id": grab.frame_id,
            "device_timestamp_ns": grab.device_ts_ns,
            "width": int(grab.image.shape[1]),  # type: ignore[union-attr]
            "height": int(grab.image.shape[0]),  # type: ignore[union-attr]
            "settings": cam.settings(),
        }
    finally:
        cam.close()
    if not cv2.imwrite(str(out), grab.image):  # type: ignore[arg-type]
        _fail(f"cannot write {out} (unknown extension or unwritable folder)")
    info["out"] = str(out)
    typer.echo(json.dumps(info))


def register(app: typer.Typer) -> None:
    app.add_typer(camera_app, name="camera")
