"""The `edge` command."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import typer

from edge.config import AppConfig, ConfigError, load_config

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="edge-inspect: vision inspection appliance for pharmaceutical packaging lines.",
)
config_app = typer.Typer(no_args_is_help=True, help="Check and show configuration.")
app.add_typer(config_app, name="config")

ConfigOpt = typer.Option(
    None, "--config", "-c", help="YAML config (default: embedded simulator demo)"
)


def _fail(msg: str, code: int = 2) -> None:
    typer.echo(msg, err=True)
    raise typer.Exit(code)


def _config_errors(source: str, lines: list[str]) -> None:
    typer.echo(f"config error in {source}:", err=True)
    for line in lines:
        typer.echo(f"  {line}", err=True)
    raise typer.Exit(2)


def _load(path: Path | None) -> AppConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        _config_errors(exc.source, exc.errors)
        raise


def _appliance(config: Path | None, cfg: AppConfig, **kw: Any) -> Any:
    """The appliance, or the config's tool problems (as `config check` prints them), exit 2."""
    from edge.app import Appliance
    from edge.inspect.registry import ToolBuildError

    try:
        return Appliance(cfg, **kw)
    except ToolBuildError as exc:
        _config_errors(str(config) if config else "embedded demo config", exc.lines())
        raise


def _override(cfg: AppConfig, **changes: Any) -> AppConfig:
    """Re-validate the config with dotted-key overrides from the command line."""
    data = cfg.model_dump(mode="json", exclude={"recipes"})
    data["recipes"] = {k: v.model_dump(mode="json") for k, v in cfg.recipes.items()}
    for key, value in changes.items():
        if value is None:
            continue
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    try:
        return AppConfig.model_validate(data)
    except Exception as exc:
        _fail(f"invalid option: {exc}")
        raise


def _logging(verbose: bool) -> None:
    """JSON lines under systemd (or EDGE_LOG_FORMAT=json), plain text otherwise; secrets redacted."""
    from edge.ops.logs import configure

    configure(logging.INFO if verbose else logging.WARNING, stream=sys.stderr)


# ------------------------------------------------------------------ config


@config_app.command("check")
def config_check(file: Path = typer.Argument(..., help="YAML config to validate")) -> None:
    """Validate a config: print every error with its key path; exit non-zero if any."""
    from edge.preflight import backend_missing, tool_problems

    cfg = _load(file)
    problems = tool_problems(cfg)  # builds the tools: models present, approved, hashes match
    if problems:
        _config_errors(str(file), problems)
    note = backend_missing(cfg)
    if note:
        typer.echo(f"note: {note}: models checked on ONNX Runtime instead", err=True)
    recipe = cfg.active_recipe()
    typer.echo(f"{file}: OK (source {cfg.source.type}, recipe {recipe.name}, plc {cfg.plc.type})")


@config_app.command("show")
def config_show(config: Path | None = ConfigOpt) -> None:
    """Print the effective config (defaults filled in) as JSON."""
    cfg = _load(config)
    typer.echo(json.dumps(cfg.model_dump(mode="json"), indent=2))


# ------------------------------------------------------------------ sim


@app.command()
def sim(
    scenario: str = typer.Option("vials", help="vials | blisters | cartons"),
    items: int = typer.Option(100, min=1),
    seed: int = typer.Option(1),
    out: Path = typer.Option(..., help="output folder"),
    defect_rate: float | None = typer.Option(None, min=0, max=1),
    code_defect_rate: float | None = typer.Option(None, min=0, max=1),
    drift: list[str] = typer.Option(
        [],
        help="NAME:PER_1000_ITEMS:START_ITEM, repeatable; NAME: fill_level (mm), "
        "cap_tilt (deg), print_contrast (fraction)",
    ),
    print_defect_rate: float | None = typer.Option(
        None, min=0, max=1, help="printed-text defects (vials, cartons)"
    ),
    print_font: str | None = typer.Option(None, help="solid | dotmatrix"),
    views: int | None = typer.Option(
        None, min=1, max=8, help="cameras around each item (views/<k>/); default: the config's"
    ),
    top_view: bool = typer.Option(
        False, "--top-view", help="the last of the views looks down on the cap (vials)"
    ),
    novel_rate: float | None = typer.Option(
        None, min=0, max=1, help="novel defects no model was trained on (reason ANOMALY)"
    ),
    config: Path | None = ConfigOpt,
) -> None:
    """Render a simulated line to images, truth.jsonl and a YOLO dataset."""
    from edge.sim.drift import parse_drift
    from edge.sim.export import export

    cfg = _load(config)
    src = cfg.source.model_dump() if cfg.source.type == "simulator" else {}
    src.update(type="simulator", scenario=scenario, seed=seed, items=items, realtime=False)
    if cfg.views and views is None:  # the station's cameras, each where it looks from
        from edge.config import SimulatorSource
        from edge.line.views import simulated_view

        sim_cfg = simulated_view(SimulatorSource.model_validate(src), cfg.views, 0)
        src.update(sim_cfg.model_dump(include={"views", "top_view", "label_view"}))
    src.update(
        views=views or src.get("views", 1), view=0, top_view=top_view or src.get("top_view", False)
    )
    if defect_rate is not None:
        src["defect_rate"] = defect_rate
    if code_defect_rate is not None:
        src["code_defect_rate"] = code_defect_rate
    if drift:
        try:
            src["process_drift"] = [parse_drift(d).model_dump() for d in drift]
        except ValueError as exc:
            _fail(str(exc))
    if print_defect_rate is not None:
        src["print_defect_rate"] = print_defect_rate
    if print_font is not None:
        src["print_font"] = print_font
    if novel_rate is not None:
        src["novel_rate"] = novel_rate
    cfg = _override(cfg, source=src)
    t0 = time.perf_counter()
    summary = export(cfg.source, out, items)
    dt = time.perf_counter() - t0
    typer.echo(
        json.dumps({"out": str(out), "items": items, "seconds": round(dt, 2), **(summary or {})})
    )


# ------------------------------------------------------------------ inspect / eval


@app.command()
def inspect(
    source: Path = typer.Option(..., help="image folder or `edge sim` output folder"),
    jsonl: Path = typer.Option(..., help="write one JSON line per item here"),
    config: Path | None = ConfigOpt,
    recipe: str | None = typer.Option(None, help="recipe name (default: the folder's scenario)"),
    state_dir: Path | None = typer.Option(
        None, help="keep records here (default: a temporary folder, removed after)"
    ),
    workers: int | None = typer.Option(None, min=1),
    deviations: Path | None = typer.Option(
        None, help="write one JSON line per SPC deviation alert here (the recipe's `spc`)"
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run a folder of images through the same pipeline, offline."""
    from edge.domain import BatchState
    from edge.spc.feed import SpcFeed

    _logging(verbose)
    cfg = _load(config)
    if not source.is_dir():
        _fail(f"{source}: not a folder")
    scenario = None
    truth = source / "truth.jsonl"
    if truth.exists():
        with open(truth, encoding="utf-8") as f:
            first = f.readline()
        scenario = json.loads(first).get("scenario") if first.strip() else None
    recipe = recipe or cfg.recipe or scenario
    if recipe is not None and recipe not in cfg.recipes:
        _fail(f"unknown recipe {recipe!r} (known: {', '.join(sorted(cfg.recipes))})")
    batch = None
    if (source / "batch.json").exists():
        b = json.loads((source / "batch.json").read_text())
        batch = BatchState(b.get("lot"), b.get("gtin"), b.get("expiry"))
    tmp = None
    if state_dir is None:
        tmp = tempfile.mkdtemp(prefix="edge-inspect-")
        state_dir = Path(tmp)
    view_sources = {}
    for k, v in enumerate(cfg.views):  # several cameras: view k of an `edge sim` export
        folder = source if k == 0 else source / "views" / str(k)
        own = v.source.model_dump(mode="json") if v.source is not None else None
        view_sources[v.name] = own or {"type": "folder", "path": str(folder)}
    cfg = _override(
        cfg,
        source={"type": "folder", "path": str(source)},
        views=[{**v.model_dump(mode="json"), "source": view_sources[v.name]} for v in cfg.views],
        recipe=recipe,
        **{
            "records.state_dir": str(state_dir),
            "records.sample_pass_every": 0,
            "records.keep_reject_images": False,
            "mqtt.enabled": False,
            "plc": {"type": "none"},
            "pipeline.workers": workers,
        },
    )
    lines = 0
    lock = threading.Lock()
    dev_out = open(deviations, "w", encoding="utf-8") if deviations else None  # noqa: SIM115

    def deviation(d: Any) -> None:
        if dev_out is not None:
            dev_out.write(json.dumps(d.to_dict()) + "\n")

    try:
        appliance = _appliance(config, cfg, batch=batch, components=False)
        spc = SpcFeed(appliance.pipeline.recipe.spc, deviation)
        with open(jsonl, "w", encoding="utf-8") as out:

            def write(_topic: str, item: Any) -> None:
                nonlocal lines
                rec = {
                    "id": item.frame.name if item.frame and item.frame.name else item.id,
                    "item_id": item.id,
                    "image": ((item.frame.truth or {}).get("image") or item.frame.name)
                    if item.frame
                    else None,
                    "verdict": item.verdict.value,
                    "reasons": item.reasons,
                    "findings": [f.to_dict() for f in item.findings],
                    "codes": [c.to_dict() for c in item.codes],
                    "latency_ms": round(item.latency_ms or 0.0, 2),
                }
                if item.measurements:
                    rec["measurements"] = item.measurements
                with lock:
                    out.write(json.dumps(rec) + "\n")
                    lines += 1
                spc.add(item)

            appliance.pipeline.bus.subscribe_sync("verdict", write)
            appliance.start()
            appliance.pipeline.wait()
            appliance.stop()
        stats = appliance.pipeline.stats.snapshot()
    finally:
        if dev_out is not None:
            dev_out.close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    typer.echo(
        json.dumps(
            {
                "items": lines,
                "passed": stats["passed"],
                "rejected": stats["rejected"],
                "deadline_misses": stats["deadline_misses"],
                "p50_ms": stats["p50_ms"],
                "p99_ms": stats["p99_ms"],
                "jsonl": str(jsonl),
            }
        )
    )


@app.command("eval")
def eval_cmd(
    truth: Path = typer.Option(..., help="truth.jsonl from `edge sim`"),
    pred: Path = typer.Option(..., help="JSONL from `edge inspect`"),
) -> None:
    """Compare predictions with truth: escapes, false rejects, recall per reason and per class."""
    from edge.truth_eval import read_jsonl, score_against_truth

    try:
        report = score_against_truth(read_jsonl(truth), read_jsonl(pred))
    except (OSError, ValueError, KeyError) as exc:
        _fail(f"cannot evaluate: {exc}")
        return
    typer.echo(json.dumps(report, indent=2))


# ------------------------------------------------------------------ run / demo


def _install_signal_handlers(stop: threading.Event) -> None:
    def handler(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _console(appliance: Any, stop: threading.Event, done: threading.Event) -> None:
    from rich.live import Live
    from rich.table import Table

    def render() -> Table:
        s = appliance.pipeline.stats.snapshot()
        t = Table(title=f"edge-inspect · {appliance.pipeline.recipe.name}", expand=False)
        t.add_column("measure")
        t.add_column("value", justify="right")
        t.add_row("rate / min", f"{s['rate_per_min']:.0f}")
        t.add_row("inspected", str(s["items"]))
        t.add_row("good", str(s["passed"]))
        t.add_row("rejected", str(s["rejected"]))
        for reason, n in s["by_reason"].items():
            t.add_row(f"  {reason}", str(n))
        t.add_row("yield", f"{(s['yield'] or 0) * 100:.1f} %")
        t.add_row("p50 / p99 ms", f"{s['p50_ms']} / {s['p99_ms']}")
        t.add_row("deadline misses", str(s["deadline_misses"]))
        for a in appliance.pipeline.alarms.active():
            t.add_row(f"[red]ALARM {a.code}[/red]", a.message)
        for c in appliance.components:
            st = c.status()
            t.add_row(c.name, "up" if st.get("up") else f"[red]down[/red] {st.get('detail', '')}")
        return t

    with Live(render(), refresh_per_second=4) as live:
        while not (stop.is_set() or done.is_set()):
            time.sleep(0.25)
            live.update(render())
        live.update(render())


def _serve(
    config: Path | None,
    *,
    items: int | None,
    rate: float | None,
    headless: bool,
    as_json: bool,
    port: int | None,
    mqtt: str | None,
    state_dir: Path | None,
    demo: bool,
    verbose: bool,
) -> None:
    _logging(verbose)
    cfg = _load(config)
    overrides: dict[str, Any] = {"web.port": port}
    if state_dir is not None:
        overrides["records.state_dir"] = str(state_dir)
    if "items" in type(cfg.source).model_fields:  # the simulator, a camera's trigger clock
        overrides["source.items"] = items
        overrides["source.rate_per_min"] = rate
    if mqtt:
        host, _, p = mqtt.rpartition(":")
        if not host or not p.isdigit():
            _fail("--mqtt takes HOST:PORT")
        overrides.update({"mqtt.enabled": True, "mqtt.host": host, "mqtt.port": int(p)})
    if demo and cfg.plc.type == "none":
        overrides["plc"] = {"type": "sim"}
    cfg = _override(cfg, **overrides)
    appliance = _appliance(config, cfg)
    stop, done = threading.Event(), threading.Event()
    _install_signal_handlers(stop)
    appliance.start()
    for c in appliance.components:
        if getattr(c, "url", None) and c.status().get("up"):
            typer.echo(f"web UI: {c.url}", err=True)

    def waiter() -> None:
        appliance.pipeline.wait()
        done.set()

    threading.Thread(target=waiter, daemon=True).start()
    try:
        if headless or as_json or not sys.stdout.isatty():
            while not (stop.is_set() or done.is_set()):
                time.sleep(0.2)
        else:
            _console(appliance, stop, done)
    finally:
        appliance.stop()
    s = appliance.pipeline.stats.snapshot()
    summary = {
        "items": s["items"],
        "passed": s["passed"],
        "rejected": s["rejected"],
        "escapes": s["escapes"],
        "false_rejects": s["false_rejects"],
        "deadline_misses": s["deadline_misses"],
        "p50_ms": s["p50_ms"],
        "p99_ms": s["p99_ms"],
        "by_reason": s["by_reason"],
    }
    challenge = appliance.changeover.summary()  # what the batch passed before it started
    if challenge is not None:
        summary["challenge"] = challenge
    spc = next((c for c in appliance.components if getattr(c, "name", "") == "spc"), None)
    if spc is not None:
        summary["deviations"] = spc.status()["by_measure"]
    if as_json:
        typer.echo(json.dumps(summary))
    elif headless:
        typer.echo(json.dumps(summary, indent=2))


@app.command()
def demo(
    config: Path | None = ConfigOpt,
    items: int | None = typer.Option(None, help="stop after N items (default: run until Ctrl-C)"),
    rate: float | None = typer.Option(None, help="items per minute"),
    headless: bool = typer.Option(False, help="no terminal UI"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON summary at the end"),
    port: int | None = typer.Option(None, help="web UI port"),
    mqtt: str | None = typer.Option(None, help="broker HOST:PORT"),
    state_dir: Path | None = typer.Option(None, help="records folder (default: config)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run the whole appliance on a simulated line (embedded defaults unless --config)."""
    _serve(
        config,
        items=items,
        rate=rate,
        headless=headless,
        as_json=as_json,
        port=port,
        mqtt=mqtt,
        state_dir=state_dir,
        demo=True,
        verbose=verbose,
    )


@app.command()
def run(
    config: Path | None = ConfigOpt,
    port: int | None = typer.Option(None, help="web UI port"),
    mqtt: str | None = typer.Option(None, help="broker HOST:PORT"),
    headless: bool = typer.Option(True, help="no terminal UI (service mode)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run the appliance as configured (the production service)."""
    _serve(
        config,
        items=None,
        rate=None,
        headless=headless,
        as_json=False,
        port=port,
        mqtt=mqtt,
        state_dir=None,
        demo=False,
        verbose=verbose,
    )


def _mount_optional() -> None:
    """Sub-commands whose modules bring heavier imports are mounted when present."""
    import importlib

    for module, attr in (
        ("edge.train.cli", "register"),
        ("edge.web.cli", "register"),
        ("edge.store.verify", "register"),
        ("edge.capture.camera_cli", "register"),
        ("edge.anomaly.cli", "register"),
        ("edge.recipes.cli", "register"),
    ):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        getattr(mod, attr)(app)


def main() -> None:
    _mount_optional()
    app()


if __name__ == "__main__":
    main()
