"""`edge anomaly {fit,verify}`: teach a product from good images, check INT8 against FP32.

Approval, retirement and rollback are the registry's (`edge model approve NAME VERSION`),
the same audited change control as the detector.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer

anomaly_app = typer.Typer(no_args_is_help=True, help="Good-only anomaly models: fit, verify.")

MODELS_OPT = typer.Option(Path("models"), "--models", help="registry folder (models/)")


def _fail(msg: str) -> NoReturn:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(1)


def _roi(text: str | None) -> tuple[int, int, int, int] | None:
    if not text:
        return None
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        _fail(f"--roi {text!r}: expected x,y,w,h in pixels")
    return x, y, w, h


@anomaly_app.command("fit")
def fit_cmd(
    good: list[Path] = typer.Option(..., "--good", help="folder of good images (repeatable)"),
    name: str = typer.Option(..., "--name", help="model name in the registry"),
    version: str = typer.Option(..., "--version", help="candidate version"),
    roi: str | None = typer.Option(None, "--roi", help="x,y,w,h region (default: whole image)"),
    input_size: str = typer.Option("768x512", "--input", help="feature model input WxH"),
    memory: int = typer.Option(2000, "--memory", help="coreset size (patches kept)"),
    target_frr: float = typer.Option(0.01, "--target-frr", help="false-reject target"),
    threads: int = typer.Option(1, "--threads"),
    models: Path = MODELS_OPT,
) -> None:
    """Fit a candidate anomaly model on good images only (then verify, then approve)."""
    from edge.anomaly.fit import FitError, FitOptions, fit

    try:
        w, h = (int(v) for v in input_size.lower().split("x"))
    except ValueError:
        _fail(f"--input {input_size!r}: expected WxH")
    opt = FitOptions(input_hw=(h, w), memory_size=memory, target_frr=target_frr, threads=threads)
    try:
        card = fit(good, name, version, models, _roi(roi), opt, progress=typer.echo)
    except (FitError, ValueError) as exc:
        _fail(str(exc))
    spec = card.model_extra.get("anomaly", {}) if card.model_extra else {}
    typer.echo(
        f"candidate {card.name} {card.version}: {spec.get('good_images')} good images, "
        f"threshold {spec.get('threshold'):.4f} ({spec.get('threshold_method')}, "
        f"target FRR {spec.get('target_frr')})"
    )
    held = spec.get("held_out", {})
    typer.echo(
        f"held-out good scores: min {held.get('min', 0):.4f}  median {held.get('median', 0):.4f}"
        f"  max {held.get('max', 0):.4f}"
    )
    for o in spec.get("outliers") or []:
        typer.echo(f"warning: good image {o} scores far out: is it really good?", err=True)
    typer.echo(f"next: edge anomaly verify {name} {version} --images DIR_OF_HELD_GOOD_IMAGES")


@anomaly_app.command("verify")
def verify_cmd(
    name: str,
    version: str,
    images: Path = typer.Option(..., "--images", help="held images (not fitted on)"),
    limit: int = typer.Option(100),
    record: bool = typer.Option(True, help="write the report into a candidate's card"),
    models: Path = MODELS_OPT,
) -> None:
    """INT8 feature file against the FP32 reference; exit 1 on failure."""
    from edge.anomaly.verify import verify
    from edge.models.cards import ModelError
    from edge.models.registry import ModelRegistry

    reg = ModelRegistry(models)
    try:
        reg.card(name, version)
        report = verify(reg.path(name, version), images, limit=limit, record=record)
    except ModelError as exc:
        _fail(str(exc))
    typer.echo(f"{name} {version}: {report['summary']}")
    if not report["passed"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(anomaly_app, name="anomaly")
