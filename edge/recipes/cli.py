"""`edge recipe ...`, `edge product ...`, `edge challenge run`: controlled documents from the shell.

Approval is an e-signature as in the web UI: `--user` names the signer (QA), the password
is prompted for (never an option), a reason is required. Exit 1 with one line on refusal.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any, NoReturn

import typer
import yaml

recipe_app = typer.Typer(no_args_is_help=True, help="Recipe versions: list, show, approve, ...")
product_app = typer.Typer(no_args_is_help=True, help="The product master: list, show, import, ...")
challenge_app = typer.Typer(no_args_is_help=True, help="The challenge test of a product.")

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config (default: embedded demo)")
StateOpt = typer.Option(None, "--state-dir", help="records folder (default: from the config)")
JsonOpt = typer.Option(False, "--json", help="JSON output")


def _fail(msg: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


def _shell_user() -> str:
    return f"shell:{getpass.getuser()}"


class _Ctx:
    """The config, database, audit trail and recipe book of the appliance's state dir."""

    def __init__(self, config: Path | None, state_dir: Path | None):
        from edge.config import ConfigError, load_config
        from edge.recipes.book import RecipeBook
        from edge.recipes.products import ProductMaster
        from edge.store.audit import AuditTrail
        from edge.store.db import Database

        try:
            self.cfg = load_config(config)
        except ConfigError as exc:
            _fail(f"config error: {exc}", 2)
        state = self.state = Path(state_dir or self.cfg.records.state_dir)
        self.db = Database(state / "edge.db")
        self.audit = AuditTrail(self.db)
        self.book = RecipeBook(self.db, self.audit)
        self.book.seed(self.cfg.recipes)  # the first start seeds, whoever comes first
        self.products = ProductMaster(
            self.db, self.audit, lambda n: self.book.docs.approved(n) is not None
        )

    def sign(self, user: str, reason: str, target: str) -> dict[str, Any]:
        from edge.recipes.documents import APPROVER_ROLES
        from edge.store.signatures import SignatureRefused, sign
        from edge.web.auth import UserStore

        password = typer.prompt(f"Password for {user}", hide_input=True)
        try:
            return sign(
                self.audit,
                UserStore(self.db, self.audit).authenticate,
                user,
                password,
                reason,
                "approved",
                target,
                roles=APPROVER_ROLES,
            )
        except SignatureRefused as exc:
            _fail(str(exc))


def _doc_rows(docs: Any, name: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in d.items() if k != "content"} for d in docs.versions(name)]


def _guard(fn: Any) -> Any:
    from edge.recipes.documents import DocumentError

    try:
        return fn()
    except DocumentError as exc:
        _fail(str(exc))


# ---------------------------------------------------------------------- recipes


@recipe_app.command("list")
def recipe_list(
    config: Path | None = ConfigOpt, state_dir: Path | None = StateOpt, as_json: bool = JsonOpt
) -> None:
    """Every recipe with its versions and their status."""
    c = _Ctx(config, state_dir)
    out = {n: _doc_rows(c.book.docs, n) for n in c.book.docs.names()}
    if as_json:
        typer.echo(json.dumps(out, default=str))
        return
    for n, rows in out.items():
        vs = ", ".join(f"v{r['version']} {r['status']}" for r in rows)
        typer.echo(f"{n:20s} {vs}")


@recipe_app.command("show")
def recipe_show(
    name: str,
    version: int | None = typer.Option(None, "--version"),
    config: Path | None = ConfigOpt,
    state_dir: Path | None = StateOpt,
    as_json: bool = JsonOpt,
) -> None:
    """A version's content (default: the approved one) with its status and hash."""
    c = _Ctx(config, state_dir)
    doc = _guard(lambda: c.book.docs.get(name, version) if version else c.book.docs.approved(name))
    if doc is None:
        _fail(f"recipe {name!r} has no approved version")
    if as_json:
        typer.echo(json.dumps(doc, default=str))
        return
    typer.echo(f"# {name} v{doc['version']} {doc['status']} sha256 {doc['sha256']}")
    typer.echo(yaml.safe_dump(doc["content"], sort_keys=False))


@recipe_app.command("draft")
def recipe_draft(
    file: Path,
    reason: str = typer.Option(..., "--reason"),
    config: Path | None = ConfigOpt,
    state_dir: Path | None = StateOpt,
) -> None:
    """Store a recipe YAML file as a new draft version (validated like a config's recipe)."""
    from edge.config import Recipe
    from edge.taxonomy import recipe_defaults

    c = _Ctx(config, state_dir)
    try:
        recipe = Recipe.model_validate(recipe_defaults(yaml.safe_load(file.read_text())))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        _fail(f"{file}: {exc}", 2)
    from edge.recipes.book import recipe_content

    v = c.book.docs.add_draft(recipe.name, recipe_content(recipe), _shell_user(), reason)
    typer.echo(f"{recipe.name} v{v} draft")


@recipe_app.command("approve")
def recipe_approve(
    name: str,
    version: int,
    user: str = typer.Option(..., "--user"),
    reason: str = typer.Option(..., "--reason"),
    config: Path | None = ConfigOpt,
    state_dir: Path | None = StateOpt,
) -> None:
    """Approve a draft with an e-signature (QA: password prompted, reason required)."""
    c = _Ctx(config, state_dir)
    _guard(lambda: c.book.docs.get(name, version))
    sig = c.sign(user, reason, c.book.docs.target(name, version))
    _guard(lambda: c.book.docs.approve(name, version, sig))
    typer.echo(f"approved recipe {name} v{version}")


@recipe_app.command("retire")
def recipe_retire(
    name: str,
    version: int,
    reason: str = typer.Option(..., "--reason"),
    config: Path | None = ConfigOpt,
    state_dir: Path | None = StateOpt,
) -> None:
    """Withdraw a version (the line then has no approved version of it until one is)."""
    c = _Ctx(config, state_dir)
    _guard(lambda: c.book.docs.retire(name, version, _shell_user(), reason))
    typer.echo(f"retired recipe {name} v{version}")


@recipe_app.command("rollback")
def recipe_rollback(
    name: str,
    reason: str = typer.Option(..., "--reason"),
    config: Path | None = ConfigOpt,
    state_dir: Path | None = StateOpt,
) -> None:
    """Retire the approved version and re-approve the one approved before it."""
    c = _Ctx(config, state_dir)
    doc = _guard(lambda: c.book.docs.rollback(name, _shell_user(), reason))
    typer.echo(f"rolled back recipe {name} to v{doc['version']}")


@recipe_app.command("diff")
def recipe_diff(
    name: str,
    a: int,
    b: int,
    config: Path | None = ConfigOpt,
    state_dir: Path | None = StateOpt,
    as_json: bool = JsonOpt,
) -> None:
    """What changed from version A to version B, key by key."""
    c = _Ctx(config, state_dir)
    d = _guard(lambda: c.book.docs.diff(name, a, b))
    if as_json:
        typer.echo(json.dumps(d, default=str))
        return
    for k, v in d.items():
        typer.echo(f"{k}: {v['old']!r} -> {v['new']!r}")


# ---------------------------------------------------------------------- products


@product_app.command("list")
def product_list(
    config: Path | None = ConfigOpt, state_dir: Path | None = StateOpt, as_json: bool = JsonOpt
) -> None:
    """Every product: GTIN, name, recipe, approved and latest version."""
    rows = _Ctx(config, state_dir).products.list()
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for r in rows:
        typer.echo(
            f"{r['gtin']} {r['name']:30s} {r['recipe']:12s} "
            f"approved v{r['approved_version']} latest v{r['latest_version']} "
            f"{r['latest_status']}"
        )


@product_app.command("show")
def product_show(
    gtin: str,
    config: Path | None = ConfigOpt,
    state_dir: Path | None = StateOpt,
    as_json: bool = JsonOpt,
) -> None:
    """A product's versions and the content of the approved (else latest) one."""
    c = _Ctx(config, state_dir)
    gtin = gtin.zfill(14)
    doc = c.products.docs.approved(gtin) or c.products.docs.latest(gtin)
    if doc is None:
        _fail(f"no product with GTIN {gtin}")
    if as_json:
        typer.echo(json.dumps({**doc, "versions": _doc_rows(c.products.docs, gtin)}, default=str))
        return
    typer.echo(f"# {gtin} v{doc['version']} {doc['status']}")
    typer.echo(yaml.safe_dump(doc["content"], sort_keys=False))


@product_app.command("import")
def product_import(
    file: Path, config: Path | None = ConfigOpt, state_dir: Path | None = StateOpt
) -> None:
    """Products from a YAML file, each as a draft (QA approves them here)."""
    c = _Ctx(config, state_dir)
    try:
        done = c.products.import_yaml(file.read_text(), _shell_user())
    except (OSError, ValueError, yaml.YAMLError) as exc:
        _fail(f"{file}: {exc}", 2)
    for gtin, v in done:
        typer.echo(f"{gtin} v{v}")


@product_app.command("export")
def product_export(
    out: Path = typer.Option(..., "--out"),
    gtin: list[str] | None = typer.Option(None, "--gtin"),
    config: Path | None = ConfigOpt,
    state_dir: Path | None = StateOpt,
) -> None:
    """The approved (else latest) version of each product as YAML."""
    c = _Ctx(config, state_dir)
    out.write_text(c.products.export_yaml([g.zfill(14) for g in gtin] if gtin else None))
    typer.echo(str(out))


@product_app.command("approve")
def product_approve(
    gtin: str,
    version: int,
    user: str = typer.Option(..., "--user"),
    reason: str = typer.Option(..., "--reason"),
    config: Path | None = ConfigOpt,
    state_dir: Path | None = StateOpt,
) -> None:
    """Approve a product draft with an e-signature; refused while its challenge set is
    empty or incomplete or its recipe has no approved version."""
    c = _Ctx(config, state_dir)
    gtin = gtin.zfill(14)
    docs = c.products.docs
    _guard(lambda: docs.get(gtin, version))
    problems = docs.check(docs.get(gtin, version)["content"])
    if problems:  # said before the password is asked for
        _fail(f"refusing to approve product {gtin} v{version}: " + "; ".join(problems))
    sig = c.sign(user, reason, docs.target(gtin, version))
    _guard(lambda: docs.approve(gtin, version, sig))
    typer.echo(f"approved product {gtin} v{version}")


# ---------------------------------------------------------------------- challenge


@challenge_app.command("run")
def challenge_run(
    gtin: str | None = typer.Option(None, "--product", help="GTIN"),
    recipe: str | None = typer.Option(None, "--recipe"),
    config: Path | None = ConfigOpt,
    state_dir: Path | None = StateOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Run the challenge of a product (or the active recipe's standard set); exit 1 when a
    unit gets the wrong verdict or reason."""
    from edge.config import SimulatorSource
    from edge.domain import BatchState
    from edge.inspect.base import Services
    from edge.inspect.registry import build_tools
    from edge.recipes import challenge

    c = _Ctx(config, state_dir)
    product = None
    if gtin:
        product = c.products.approved(gtin)
        if product is None:
            _fail(f"GTIN {gtin.zfill(14)} has no approved product")
    name = (product.recipe if product else None) or recipe or c.cfg.active_recipe().name
    rec, stamp = _guard(lambda: c.book.approved(name))
    units = challenge.units_for(product, rec)
    if not units:
        _fail(f"no challenge set for recipe {name!r}")
    scenario = (product.scenario if product else None) or rec.scenario
    src = c.cfg.source
    if src.type == "simulator" and (scenario is None or src.scenario == scenario):
        base = src
    elif scenario:
        base = SimulatorSource(scenario=scenario)
    else:
        _fail("no simulated product renders this challenge set (set the product's scenario)")
    from edge.sim.twin import LineSimulator

    sim_batch = LineSimulator(base).batch  # the simulator's lot and expiry, the product's GTIN
    batch = BatchState(sim_batch.lot, product.gtin if product else sim_batch.gtin, sim_batch.expiry)
    from edge.models.registry import model_roots

    roots = model_roots(c.state, c.cfg.inference.models_dir)  # the models the line would run
    svc = Services(models_dir=roots, backend=c.cfg.inference.backend)
    tools = build_tools(rec, svc)
    try:
        res = challenge.run_challenge(rec, tools, units, batch, base, views=c.cfg.views)
    finally:
        for t in tools:
            t.close()
    res.recipe_version = stamp.version
    challenge.record(c.db, res, batch, _shell_user())
    if as_json:
        typer.echo(json.dumps({**res.summary(), "results": res.results}))
    else:
        for r in res.results:
            mark = "ok  " if r["ok"] else "FAIL"
            typer.echo(
                f"{mark} {r['unit']:20s} expected {r['expect']} {r['expect_reason'] or ''}"
                f" got {r['verdict']} {','.join(r['reasons'])}"
            )
        typer.echo(f"challenge {'passed' if res.passed else 'FAILED'}: {res.units} units")
    if not res.passed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(recipe_app, name="recipe")
    app.add_typer(product_app, name="product")
    app.add_typer(challenge_app, name="challenge")
