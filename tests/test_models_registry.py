"""Model change control: only approved, intact, verified models run; approval and rollback are audited."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.models.cards import FP32, INT8, ModelError, load_card, save_card
from edge.models.registry import ModelRegistry
from edge.train import dataset


def make_version(
    reg: ModelRegistry, version: str, verified: bool = True, payload: bytes = b""
) -> Path:
    src = reg.root.parent / f"src-{version}.onnx"
    src.write_bytes(b"fp32 model " + version.encode() + payload)
    reg.create("defects", version, src, classes=["crack", "code"], input_size=320, by="tester")
    d = reg.path("defects", version)
    (d / INT8).write_bytes(b"int8 model " + version.encode() + payload)
    card = load_card(d)
    card.files[INT8] = dataset.sha256_file(d / INT8)
    if verified:
        card.verify = {"passed": True, "summary": "ok", "int8_sha256": card.files[INT8]}
    save_card(d, card)
    return d


@pytest.fixture
def reg(tmp_path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models")


def test_a_new_model_is_a_candidate_and_the_line_will_not_load_it(reg):
    make_version(reg, "1.0.0")
    assert load_card(reg.path("defects", "1.0.0")).status == "candidate"
    with pytest.raises(ModelError, match="no approved version"):
        reg.open_model("defects")
    with pytest.raises(ModelError, match="candidate, not approved"):
        reg.open_model("defects", "1.0.0")


def test_approval_needs_a_passed_verification(reg):
    make_version(reg, "1.0.0", verified=False)
    with pytest.raises(ModelError, match="verify` has not passed"):
        reg.approve("defects", "1.0.0", by="qa", reason="release")


def test_approval_is_audited_and_the_approved_model_resolves_with_its_hash(reg):
    make_version(reg, "1.0.0")
    events = []
    reg.approve(
        "defects",
        "1.0.0",
        by="qa.lead",
        reason="release 1",
        audit=lambda a, d: events.append((a, d)),
    )
    opened = reg.open_model("defects")
    card, path = opened.card, opened.path
    assert card.status == "approved" and path.name == INT8
    assert events == [
        (
            "model.approve",
            {
                "name": "defects",
                "version": "1.0.0",
                "sha256": card.files[INT8],
                "replaces": None,
                "by": "qa.lead",
                "reason": "release 1",
            },
        )
    ]
    assert [e.action for e in card.history] == ["create", "approve"]


def test_a_model_file_that_does_not_match_its_card_is_refused(reg):
    d = make_version(reg, "1.0.0")
    reg.approve("defects", "1.0.0", by="qa", reason="r")
    (d / INT8).write_bytes(b"tampered")
    with pytest.raises(ModelError, match=r"model.int8.onnx: SHA-256 .* does not match the card"):
        reg.open_model("defects")
    (d / INT8).unlink()
    with pytest.raises(ModelError, match=r"model\.int8\.onnx: missing"):
        reg.open_model("defects")


def test_approving_a_new_version_retires_the_old_one_and_rollback_restores_it(reg):
    make_version(reg, "1.0.0")
    make_version(reg, "1.1.0")
    reg.approve("defects", "1.0.0", by="qa", reason="first")
    reg.approve("defects", "1.1.0", by="qa", reason="second")
    assert [c.status for c in reg.list()] == ["retired", "approved"]
    assert reg.open_model("defects").card.version == "1.1.0"
    events = []
    back = reg.rollback(
        "defects", by="qa", reason="field complaint", audit=lambda a, d: events.append((a, d))
    )
    assert back.version == "1.0.0"
    assert reg.open_model("defects").card.version == "1.0.0"
    assert [c.status for c in reg.list()] == ["approved", "retired"]
    assert events[0][0] == "model.rollback"
    assert events[0][1]["from"] == "1.1.0" and events[0][1]["to"] == "1.0.0"


def test_rollback_refuses_a_target_whose_files_changed(reg):
    d = make_version(reg, "1.0.0")
    make_version(reg, "1.1.0")
    reg.approve("defects", "1.0.0", by="qa", reason="first")
    reg.approve("defects", "1.1.0", by="qa", reason="second")
    (d / FP32).write_bytes(b"changed")
    with pytest.raises(ModelError, match="cannot roll back"):
        reg.rollback("defects", by="qa", reason="r")
    assert reg.open_model("defects").card.version == "1.1.0"  # the line keeps the approved model


def test_a_refused_audit_leaves_the_registry_unchanged(reg):
    make_version(reg, "1.0.0")

    def audit_down(action, details):
        raise RuntimeError("audit trail unavailable")

    with pytest.raises(RuntimeError, match="audit trail"):
        reg.approve("defects", "1.0.0", by="qa", reason="r", audit=audit_down)
    assert load_card(reg.path("defects", "1.0.0")).status == "candidate"


def test_versions_are_never_overwritten(reg):
    make_version(reg, "1.0.0")
    with pytest.raises(ModelError, match="never overwritten"):
        make_version(reg, "1.0.0")


def test_dataset_manifest_names_every_file_and_detects_changes(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"a")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    man = dataset.write_manifest(tmp_path)
    assert sorted(man["files"]) == ["images/a.png", "labels/a.txt"]
    assert dataset.verify_manifest(tmp_path) == []
    (tmp_path / "labels" / "a.txt").write_text("1 0.5 0.5 0.1 0.1\n")
    (tmp_path / "images" / "b.png").write_bytes(b"b")
    assert dataset.verify_manifest(tmp_path) == ["added: images/b.png", "changed: labels/a.txt"]
