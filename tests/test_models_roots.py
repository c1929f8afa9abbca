"""Where models live on the appliance, per-product model names, and failed jobs.

Candidates are written under the state directory; the models that ship with the project
are read-only (their status changes are kept in the state directory). Approving one
product's model never touches another's. A failed job's version is never approvable and
the technician can discard it (audited). Evaluation refuses sets it cannot judge with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.models.cards import INT8, ModelError, load_card, save_card, sha256_file
from edge.models.registry import ModelRegistry, model_roots
from edge.train.dataset_versions import evaluation_sets
from edge.train.detector_metrics import no_defects_sentence, require_defects


def make_version(reg: ModelRegistry, name: str, version: str, classes=("crack",)) -> Path:
    src = reg.root.parent / f"src-{name}-{version}.onnx"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(b"fp32 " + name.encode() + version.encode())
    reg.create(name, version, src, classes=list(classes), input_size=320, by="tester")
    d = reg.path(name, version)
    (d / INT8).write_bytes(b"int8 " + name.encode() + version.encode())
    card = load_card(d)
    card.files[INT8] = sha256_file(d / INT8)
    card.verify = {"passed": True, "summary": "ok", "int8_sha256": card.files[INT8]}
    save_card(d, card)
    return d


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def shipped(tmp_path) -> Path:
    """A shipped models folder with an approved vial model, then made read-only (the
    snapshot comparison is the check: root ignores the permissions)."""
    root = tmp_path / "install" / "models"
    reg = ModelRegistry(root)
    make_version(reg, "defects", "1.0.1")
    reg.approve("defects", "1.0.1", by="release", reason="shipped")
    for p in root.rglob("*"):
        p.chmod(0o555 if p.is_dir() else 0o444)
    root.chmod(0o555)
    yield root
    for p in [root, *root.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


def test_candidates_go_to_the_state_directory_and_shipped_models_stay_as_shipped(tmp_path, shipped):
    before = snapshot(shipped)
    reg = ModelRegistry(model_roots(tmp_path / "state", shipped))
    assert reg.approved("defects").version == "1.0.1"  # the shipped model is found
    d = make_version(reg, "defects", "2.0.0")
    assert d.is_relative_to(tmp_path / "state" / "models")
    reg.approve("defects", "2.0.0", by="qa", reason="better on T1")
    assert reg.approved("defects").version == "2.0.0"
    assert reg.card("defects", "1.0.1").status == "retired"  # kept in the state dir
    assert reg.open_model("defects").dir == d
    reg.rollback("defects", by="qa", reason="false rejects")
    assert reg.approved("defects").version == "1.0.1"
    assert reg.open_model("defects").dir.is_relative_to(shipped)
    assert snapshot(shipped) == before  # not one byte of the install changed
    with pytest.raises(ModelError, match=r"line.s record"):  # and it ships read-only
        ModelRegistry(model_roots(tmp_path / "s2", shipped)).discard("defects", "1.0.1")


def test_approving_one_products_model_never_retires_anothers(tmp_path, shipped):
    reg = ModelRegistry(model_roots(tmp_path / "state", shipped))
    make_version(reg, "capsules", "1", classes=("capsule_defect",))
    reg.approve("capsules", "1", by="qa", reason="capsule line")
    assert reg.approved("defects").version == "1.0.1"
    assert reg.approved("capsules").classes == ["capsule_defect"]
    assert reg.names() == ["capsules", "defects"]


def test_a_failed_job_leaves_nothing_approvable_and_the_technician_can_discard_it(tmp_path):
    reg = ModelRegistry(tmp_path / "models")
    make_version(reg, "capsules", "1")
    reg.mark_failed("capsules", "1", "ValueError: calibration", by="job")
    card = reg.card("capsules", "1")
    assert card.status == "failed" and card.model_dump()["failure"]["error"].startswith("Value")
    with pytest.raises(ModelError, match="job that made it failed"):
        reg.approve("capsules", "1", by="qa", reason="x")
    events = []
    reg.discard(
        "capsules", "1", by="tom", reason="failed job", audit=lambda a, d: events.append((a, d))
    )
    assert reg.versions("capsules") == []
    assert events[0][0] == "model.discard" and events[0][1]["status"] == "failed"
    make_version(reg, "capsules", "2")
    reg.approve("capsules", "2", by="qa", reason="ok")
    with pytest.raises(ModelError, match=r"line.s record"):
        reg.discard("capsules", "2", by="tom")


def labelled_set(root: Path, labels: dict[str, str], sha: str = "x") -> Path:
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    for stem, text in labels.items():
        (root / "images" / "val" / f"{stem}.png").write_bytes(b"png")
        (root / "labels" / "val" / f"{stem}.txt").write_text(text)
    (root / "manifest.json").write_text(json.dumps({"sha256": sha}))
    return root


def test_a_test_set_without_defects_of_the_models_classes_is_refused_in_plain_words(tmp_path):
    good_only = labelled_set(tmp_path / "good", {"a": "", "b": ""})
    with pytest.raises(ValueError) as e:
        require_defects(good_only / "images" / "val", ["capsule_defect"])
    assert str(e.value) == no_defects_sentence(["capsule_defect"])
    assert "no labelled defects" in str(e.value) and "Traceback" not in str(e.value)
    other = labelled_set(tmp_path / "other", {"a": "3 0.5 0.5 0.1 0.1"})  # not its class
    with pytest.raises(ValueError, match="no labelled defects"):
        require_defects(other / "images" / "val", ["capsule_defect"])
    ok = labelled_set(tmp_path / "ok", {"a": "0 0.5 0.5 0.1 0.1", "b": ""})
    assert require_defects(ok / "images" / "val", ["capsule_defect"]) == {"capsule_defect": 1}
    (tmp_path / "raw").mkdir()  # unlabelled photos (calibration): not a test set, not refused
    assert require_defects(tmp_path / "raw", ["capsule_defect"]) is None


def test_the_test_sets_offered_are_only_those_the_model_never_trained_on(tmp_path):
    root = tmp_path / "datasets"
    labelled_set(root / "ds-1", {"a": "0 0.5 0.5 0.1 0.1"}, sha="s1")
    labelled_set(root / "ds-2", {"a": "0 0.5 0.5 0.1 0.1"}, sha="s2")
    labelled_set(root / "copy-of-1", {"a": "0 0.5 0.5 0.1 0.1"}, sha="s1")
    assert evaluation_sets(root) == ["ds-2", "ds-1", "copy-of-1"]
    trained = [{"version": "ds-1", "manifest_sha256": "s1"}]
    assert evaluation_sets(root, trained) == ["ds-2"]
