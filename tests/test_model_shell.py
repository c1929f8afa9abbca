"""`edge model list/approve/retire/rollback` in the shell work on the appliance's registry,
as the web UI and the training jobs do: candidates under the state directory, the shipped
models read-only. A candidate trained in the web UI is approved from the shell; the shipped
files are never written; one product's model changes, no other's."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml
from typer.testing import CliRunner

from edge.models.cards import INT8, load_card, save_card
from edge.models.registry import ModelRegistry, model_roots
from edge.store.audit import AuditTrail
from edge.store.db import Database
from edge.train import dataset
from edge.train.cli import model_app


def make_version(reg: ModelRegistry, name: str, version: str) -> None:
    """A verified version of `name` (stand-in files; the registry checks only hashes)."""
    src = reg.root.parent / f"src-{name}-{version}.onnx"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(f"fp32 {name} {version}".encode())
    reg.create(name, version, src, classes=["crack", "code"], input_size=320, by="tester")
    d = reg.path(name, version)
    (d / INT8).write_bytes(f"int8 {name} {version}".encode())
    card = load_card(d)
    card.files[INT8] = dataset.sha256_file(d / INT8)
    card.verify = {"passed": True, "summary": "ok", "int8_sha256": card.files[INT8]}
    save_card(d, card)


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def appliance(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A shipped folder with an approved `defects` 1.0.0, a state directory holding a
    `defects` candidate 2.0.0 and a `capsules` candidate, and the config naming both."""
    shipped, state = tmp_path / "shipped", tmp_path / "state"
    make_version(ModelRegistry(shipped), "defects", "1.0.0")
    ModelRegistry(shipped).approve("defects", "1.0.0", by="release", reason="shipped")
    reg = ModelRegistry(model_roots(state, shipped))
    make_version(reg, "defects", "2.0.0")
    make_version(reg, "capsules", "1.0.0")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"records": {"state_dir": str(state)}, "inference": {"models_dir": str(shipped)}}
        )
    )
    return shipped, state, cfg


def edge_model(*args: str, cfg: Path) -> str:
    r = CliRunner().invoke(model_app, [*args, "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    return r.output


def test_the_shell_approves_a_web_candidate_without_touching_the_shipped_files(tmp_path):
    shipped, state, cfg = appliance(tmp_path)
    before = tree_digest(shipped)
    listed = edge_model("list", cfg=cfg)
    assert "2.0.0" in listed and "capsules" in listed  # the state directory's candidates
    edge_model("approve", "defects", "2.0.0", "--reason", "verified", "--by", "qa", cfg=cfg)
    reg = ModelRegistry(model_roots(state, shipped))
    assert reg.approved("defects").version == "2.0.0"
    assert reg.card("defects", "1.0.0").status == "retired"
    assert reg.card("capsules", "1.0.0").status == "candidate"  # another product's: untouched
    edge_model("rollback", "defects", "--reason", "field complaint", "--by", "qa", cfg=cfg)
    reg = ModelRegistry(model_roots(state, shipped))
    assert reg.approved("defects").version == "1.0.0"
    assert reg.card("defects", "2.0.0").status == "retired"
    edge_model("approve", "capsules", "1.0.0", "--reason", "new product", "--by", "qa", cfg=cfg)
    edge_model("retire", "capsules", "1.0.0", "--reason", "withdrawn", "--by", "qa", cfg=cfg)
    reg = ModelRegistry(model_roots(state, shipped))
    assert reg.approved("capsules") is None
    assert reg.approved("defects").version == "1.0.0"  # the vial model stays approved
    assert tree_digest(shipped) == before  # shipped bytes and cards never written
    actions = [e["action"] for e in AuditTrail(Database(state / "edge.db")).entries()]
    assert actions.count("model.approve") == 2 and "model.rollback" in actions
    assert "model.retire" in actions


def test_a_refusal_in_the_shell_is_one_plain_line(tmp_path):
    _shipped, _state, cfg = appliance(tmp_path)
    r = CliRunner().invoke(
        model_app, ["approve", "defects", "9.9.9", "--reason", "x", "--config", str(cfg)]
    )
    assert r.exit_code == 1
    assert r.output.startswith("error: ") and "9.9.9" in r.output
    assert "Traceback" not in r.output
