"""`edge train`, `edge quantize`, `edge model {list,verify,eval,approve,retire,rollback,build-engine}`.

Mounted on the main CLI with `register(app)`. Every command is a thin shell over the
functions in edge.train.*; exit code 1 with a one-line reason on refusal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import typer

from edge.models.cards import INT8, ModelError, now_iso, whoami
from edge.models.registry import ModelRegistry

model_app = typer.Typer(help="Model registry: list, verify, evaluate, approve, retire, roll back.")

MODELS_OPT = typer.Option(Path("models"), "--models", help="registry folder (models/)")
#: the registry commands: without --models, the appliance's registry (as the web sees it)
REGISTRY_OPT = typer.Option(
    None,
    "--models",
    help="one registry folder to read and write (releasing a shipped model); default: the "
    "appliance's registry, <state dir>/models then the config's inference.models_dir, "
    "read-only",
)


def _fail(msg: str) -> NoReturn:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(1)


ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config (default: embedded demo)")
StateOpt = typer.Option(None, "--state-dir", help="records folder with the audit trail")


def _config(config: Path | None):
    from edge.config import ConfigError, load_config

    try:
        return load_config(config)
    except ConfigError as exc:
        _fail(f"config error: {exc}")


def _state_dir(config: Path | None, state_dir: Path | None) -> Path:
    return Path(state_dir) if state_dir is not None else Path(_config(config).records.state_dir)


def registry_roots(
    models: Path | None, config: Path | None = None, state_dir: Path | None = None
) -> list[Path]:
    """The folders a registry command works on: the one named with --models, else the
    appliance's registry as the web and the training jobs see it (`model_roots`: candidates
    and changed cards under the state directory, the shipped models read-only), so that a
    candidate trained in the web UI can be approved, retired or rolled back in the shell."""
    from edge.models.registry import model_roots

    if models is not None:
        return [Path(models)]
    return model_roots(_state_dir(config, state_dir), _config(config).inference.models_dir)


def _audit_hook(config: Path | None, state_dir: Path | None, by: str, reason: str):
    """The audit trail's hook (edge.db in the state dir): approval is refused if it fails."""
    from edge.store.audit import AuditTrail
    from edge.store.db import Database

    trail = AuditTrail(Database(_state_dir(config, state_dir) / "edge.db"))
    return trail.hook(f"shell:{by}", reason=reason)


def train_cmd(
    data: Path = typer.Option(
        ..., "--data", help="dataset folder with data.yaml (edge sim export)"
    ),
    arch: str = typer.Option("yolo11n.yaml", help="ultralytics architecture yaml (no weights)"),
    imgsz: int = typer.Option(320, help="square input size"),
    epochs: int = typer.Option(30),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("runs/train"), help="training run folder"),
    device: str = typer.Option("cpu", help='"cpu", or a CUDA GPU index such as "0"'),
    workers: int = typer.Option(0, help="data loader processes (0: in the training process)"),
    batch: int = typer.Option(16),
    name: str | None = typer.Option(None, help="register the result as a candidate of this model"),
    version: str | None = typer.Option(None, help="candidate version (with --name)"),
    models: Path = MODELS_OPT,
) -> None:
    """Train a detector offline (no download attempts); optionally register a candidate."""
    from edge.train import dataset
    from edge.train.train import class_names_of, export_onnx, train

    data = Path(data)
    if not (data / "data.yaml").is_file():
        _fail(f"{data} has no data.yaml")
    if not (data / dataset.MANIFEST).is_file():
        dataset.write_manifest(data)
    man = dataset.read_manifest(data)

    def progress(ev: dict) -> None:
        if ev.get("stage") == "epoch":
            m = ev.get("metrics", {})
            typer.echo(
                f"epoch {ev['epoch']}/{ev['epochs']}  mAP50 {m.get('metrics/mAP50(B)', 0):.3f}  "
                f"{ev['elapsed_s']:.0f}s"
            )

    best = train(
        data,
        arch=arch,
        imgsz=imgsz,
        epochs=epochs,
        seed=seed,
        out=out,
        on_progress=progress,
        device=device,
        workers=workers,
        batch=batch,
    )
    typer.echo(f"weights: {best}")
    if name:
        onnx_path = export_onnx(best, Path(out) / "export" / "model.onnx", imgsz)
        card = ModelRegistry(models).create(
            name,
            version or now_iso().replace(":", "").replace("-", "")[:15],
            onnx_path,
            classes=class_names_of(best),
            input_size=imgsz,
            arch=arch,
            dataset={"path": str(data), "manifest_sha256": man["sha256"], "files": man["count"]},
            training={
                "epochs": epochs,
                "imgsz": imgsz,
                "seed": seed,
                "batch": batch,
                "device": device,
            },
        )
        typer.echo(f"candidate: {card.name} {card.version} ({models / card.name / card.version})")


def quantize_cmd(
    name: str = typer.Argument(..., help="model name"),
    version: str = typer.Argument(..., help="candidate version"),
    calibration: Path = typer.Option(Path("calibration/sim-v1"), help="calibration image set"),
    method: str = typer.Option("percentile", help="percentile | minmax | entropy"),
    models: Path = MODELS_OPT,
) -> None:
    """INT8 Q/DQ ONNX of a candidate, from the calibration set (static, symmetric, per-channel)."""
    from edge.train.quantize import quantize

    try:
        out = quantize(ModelRegistry(models).path(name, version), calibration, method)
    except (ModelError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(f"int8: {out}")


@model_app.command("list")
def list_cmd(
    models: Path | None = REGISTRY_OPT,
    as_json: bool = typer.Option(False, "--json"),
    config: Path | None = ConfigOpt,
    state_dir: Path | None = StateOpt,
) -> None:
    """Every model version with its status and INT8 SHA-256."""
    cards = ModelRegistry(registry_roots(models, config, state_dir)).list()
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "name": c.name,
                        "version": c.version,
                        "status": c.status,
                        "sha256": c.files.get(INT8),
                        "created": c.created,
                        "created_by": c.created_by,
                    }
                    for c in cards
                ],
                indent=1,
            )
        )
        return
    for c in cards:
        sha = (c.files.get(INT8) or "-")[:12]
        typer.echo(
            f"{c.name:16} {c.version:10} {c.status:9} int8 {sha}  {c.created}  {c.created_by}"
        )


@model_app.command("verify")
def verify_cmd(
    name: str,
    version: str | None = typer.Argument(None, help="default: the approved version"),
    images: Path = typer.Option(Path("calibration/verify-sim-v1"), help="fixed image set"),
    backend: str = typer.Option("onnx", help="onnx | tensorrt"),
    limit: int = typer.Option(200),
    record: bool = typer.Option(True, help="write the report into a candidate's card"),
    models: Path | None = REGISTRY_OPT,
    config: Path | None = ConfigOpt,
    state_dir: Path | None = StateOpt,
) -> None:
    """Compare a backend running the INT8 model with the FP32 reference; exit 1 on failure."""
    from edge.config import OnnxBackend, TensorRTBackend
    from edge.train.verify import verify

    reg = ModelRegistry(registry_roots(models, config, state_dir))
    if version is None:
        card = reg.approved(name)
        if card is None:
            _fail(f"model {name!r} has no approved version; name one")
        version = card.version
    if reg.card(name, version).task == "anomaly":
        _fail(f"{name} {version} is an anomaly model: `edge anomaly verify {name} {version}`")
    cfg = OnnxBackend() if backend == "onnx" else TensorRTBackend()
    report = verify(reg.path(name, version), images, backend_config=cfg, limit=limit, record=record)
    typer.echo(f"{name} {version} [{backend}]: {report['summary']}")
    for f in report.get("failures", []):
        typer.echo(f"  - {f}")
    if not report["passed"]:
        raise typer.Exit(1)


@model_app.command("eval")
def eval_cmd(
    name: str,
    version: str | None = typer.Argument(None),
    test: Path = typer.Option(
        ..., "--test", help="labelled test set (edge sim export, unseen seed)"
    ),
    limit: int | None = typer.Option(None),
    models: Path | None = REGISTRY_OPT,
    as_json: bool = typer.Option(False, "--json"),
    config: Path | None = ConfigOpt,
    state_dir: Path | None = StateOpt,
) -> None:
    """AP50 per class, FP32 and INT8, on a test set generated with a different seed."""
    from edge.train.detector_metrics import ap50_of_version

    reg = ModelRegistry(registry_roots(models, config, state_dir))
    card = reg.card(name, version) if version else reg.approved(name)
    if card is None:
        _fail(f"model {name!r} has no approved version; name one")
    res = ap50_of_version(reg.path(card.name, card.version), test, limit=limit)
    if as_json:
        typer.echo(json.dumps(res, indent=1))
        return
    classes = sorted(
        set(res.get("fp32", {}).get("ap50", {})) | set(res.get("int8", {}).get("ap50", {}))
    )
    typer.echo(f"{'class':16} {'AP50 fp32':>10} {'AP50 int8':>10}")
    for c in classes:
        a = res.get("fp32", {}).get("ap50", {}).get(c, float("nan"))
        b = res.get("int8", {}).get("ap50", {}).get(c, float("nan"))
        typer.echo(f"{c:16} {a:10.3f} {b:10.3f}")
    typer.echo(
        f"{'mAP50':16} {res.get('fp32', {}).get('map50', float('nan')):10.3f} "
        f"{res.get('int8', {}).get('map50', float('nan')):10.3f}"
    )


@model_app.command("approve")
def approve_cmd(
    name: str,
    version: str,
    reason: str = typer.Option(
        ..., "--reason", help="why (goes into the card and the audit trail)"
    ),
    by: str | None = typer.Option(None, "--by", help="who (default: the shell user)"),
    models: Path | None = REGISTRY_OPT,
    config: Path | None = ConfigOpt,
    state_dir: Path | None = StateOpt,
) -> None:
    """Approve a verified candidate (the previously approved version is retired)."""
    c = _change(
        config,
        state_dir,
        by,
        reason,
        lambda reg, who, audit: reg.approve(name, version, who, reason, audit=audit),
        models,
    )
    typer.echo(f"approved {c.name} {c.version}")
    _build_after_approval(config, registry_roots(models, config, state_dir), c.name, c.version)


@model_app.command("retire")
def retire_cmd(
    name: str,
    version: str,
    reason: str = typer.Option(..., "--reason"),
    by: str | None = typer.Option(None, "--by", help="who (default: the shell user)"),
    models: Path | None = REGISTRY_OPT,
    config: Path | None = ConfigOpt,
    state_dir: Path | None = StateOpt,
) -> None:
    """Withdraw a version."""
    c = _change(
        config,
        state_dir,
        by,
        reason,
        lambda reg, who, audit: reg.retire(name, version, who, reason, audit=audit),
        models,
    )
    typer.echo(f"retired {c.name} {c.version}")


@model_app.command("rollback")
def rollback_cmd(
    name: str,
    reason: str = typer.Option(..., "--reason"),
    by: str | None = typer.Option(None, "--by", help="who (default: the shell user)"),
    models: Path | None = REGISTRY_OPT,
    config: Path | None = ConfigOpt,
    state_dir: Path | None = StateOpt,
) -> None:
    """Retire the approved version and re-approve the one approved before it."""
    c = _change(
        config,
        state_dir,
        by,
        reason,
        lambda reg, who, audit: reg.rollback(name, who, reason, audit=audit),
        models,
    )
    typer.echo(f"rolled back {name} to {c.version}")


@model_app.command("build-engine")
def build_engine_cmd(
    name: str,
    version: str | None = typer.Argument(None, help="default: the approved version"),
    models: Path | None = typer.Option(
        None, "--models", help="registry folder (default: the config's inference.models_dir)"
    ),
    config: Path | None = ConfigOpt,
) -> None:
    """Build the TensorRT engine of an approved model into the engine cache (state dir).

    Run at install and after approval, so that the service only loads it at start."""
    from edge.config import ConfigError, load_config
    from edge.inference.base import BackendError
    from edge.train.engines import build_engine, tensorrt_config

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        _fail(f"config error: {exc}")
    try:
        out = build_engine(models or cfg.inference.models_dir, name, version, tensorrt_config(cfg))
    except (ModelError, BackendError) as exc:
        _fail(str(exc))
    typer.echo(f"engine for {out['name']} {out['version']}: {out['engine']} ({out['seconds']} s)")


def _build_after_approval(config: Path | None, models: list[Path], name: str, version: str) -> None:
    """With a TensorRT config, the approved model's engine is built now, not at start."""
    from edge.config import ConfigError, load_config
    from edge.inference.base import BackendError
    from edge.train.engines import build_engine

    try:
        cfg = load_config(config)
    except ConfigError:
        return  # the approval stands; `edge config check` reports the config
    if cfg.inference.backend.type != "tensorrt":
        return
    try:
        out = build_engine(models, name, version, cfg.inference.backend)
    except (ModelError, BackendError) as exc:
        _fail(
            f"approved, but the TensorRT engine was not built: {exc} "
            f"(retry: edge model build-engine {name} {version})"
        )
    typer.echo(f"engine: {out['engine']} ({out['seconds']} s)")


def _change(config, state_dir, by, reason, change, models):
    """An audited registry change: the audit hook first, any refusal a clear error."""
    who = by or whoami()
    audit = _audit_hook(config, state_dir, who, reason)
    try:
        return change(ModelRegistry(registry_roots(models, config, state_dir)), who, audit)
    except ModelError as exc:
        _fail(str(exc))


def register(app: typer.Typer) -> None:
    """Mount these commands on the main `edge` app."""
    app.command("train")(train_cmd)
    app.command("quantize")(quantize_cmd)
    app.add_typer(model_app, name="model")
