"""The training path, end to end on a tiny set: offline, seeded, exported, quantised, registered.

Trains one epoch on a few synthetic images (coloured shapes on noise) to prove the
path works; it never retrains the shipped models. Any network attempt fails the test.
"""

from __future__ import annotations

import importlib.util
import socket

import cv2
import numpy as np
import pytest
import yaml

if importlib.util.find_spec("ultralytics") is None:  # not imported here: the test sets it offline
    pytest.skip(
        "training needs the `train` extra (scripts/install-train.sh)", allow_module_level=True
    )

from edge.config import OnnxBackend
from edge.inference.base import create_backend
from edge.inference.tensorrt import check_qdq_model
from edge.models import cards
from edge.models.registry import ModelRegistry
from edge.train import dataset, quantize
from edge.train.train import export_onnx, train

NAMES = ["red_box", "blue_disc"]


def synth_yolo(out, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    (out / "images").mkdir(parents=True)
    (out / "labels").mkdir(parents=True)
    for i in range(n):
        img = rng.integers(0, 60, (240, 320, 3), dtype=np.uint8)
        lines = []
        for _ in range(int(rng.integers(1, 3))):
            c = int(rng.integers(0, 2))
            w, h = (int(v) for v in rng.integers(30, 70, 2))
            x, y = int(rng.integers(0, 320 - w)), int(rng.integers(0, 240 - h))
            if c == 0:
                cv2.rectangle(img, (x, y), (x + w, y + h), (0, 0, 255), -1)
            else:
                cv2.ellipse(
                    img, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, (255, 0, 0), -1
                )
            lines.append(
                f"{c} {(x + w / 2) / 320:.6f} {(y + h / 2) / 240:.6f} {w / 320:.6f} {h / 240:.6f}"
            )
        cv2.imwrite(str(out / "images" / f"{i:03d}.png"), img)
        (out / "labels" / f"{i:03d}.txt").write_text("\n".join(lines) + "\n")
    (out / "data.yaml").write_text(yaml.safe_dump({"names": NAMES}))


@pytest.fixture
def no_network(monkeypatch):
    """Every connection or name lookup beyond loopback is recorded and refused."""
    attempts: list[str] = []
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def is_local(host) -> bool:
        return str(host) in ("localhost", "127.0.0.1", "::1", "") or str(host).startswith("127.")

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and not is_local(host):
            attempts.append(f"connect {address}")
            raise OSError("network disabled in tests")
        return real_connect(self, address)

    def getaddrinfo(host, *a, **kw):
        if not is_local(host):
            attempts.append(f"resolve {host}")
            raise socket.gaierror("network disabled in tests")
        return real_getaddrinfo(host, *a, **kw)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts


@pytest.mark.slow
def test_one_epoch_trains_offline_and_becomes_an_int8_candidate(tmp_path, no_network):
    synth_yolo(tmp_path / "raw", n=16, seed=1)
    man = dataset.prepare([tmp_path / "raw"], tmp_path / "ds", val_fraction=0.25, seed=0)
    assert man["names"] == NAMES and man["count"] == 16 * 2 + 1

    progress = []
    best = train(
        tmp_path / "ds",
        arch="yolo11n.yaml",
        imgsz=160,
        epochs=1,
        seed=0,
        out=tmp_path / "run",
        on_progress=progress.append,
        batch=8,
    )
    assert best.is_file()
    assert [e["stage"] for e in progress] == ["epoch", "done"]
    assert progress[0]["epoch"] == 1 and progress[0]["epochs"] == 1

    onnx_path = export_onnx(best, tmp_path / "export" / "model.onnx", imgsz=160)
    reg = ModelRegistry(tmp_path / "models")
    reg.create(
        "tiny",
        "0.0.1",
        onnx_path,
        classes=NAMES,
        input_size=160,
        dataset={"manifest_sha256": man["sha256"]},
    )
    d = reg.path("tiny", "0.0.1")
    quantize.quantize(d, tmp_path / "raw" / "images")
    card = cards.load_card(d)
    assert card.status == "candidate"
    assert card.dataset["manifest_sha256"] == man["sha256"]
    assert (
        card.calibration["manifest_sha256"]
        == dataset.build_manifest(tmp_path / "raw" / "images")["sha256"]
    )
    assert reg.check_files(card) == []

    info = check_qdq_model(d / cards.INT8)  # what TensorRT >= 10 is fed: Q/DQ, static, opset 17
    assert info["opset"] >= 17 and info["inputs"]["images"] == [1, 3, 160, 160]
    for f in (cards.FP32, cards.INT8):
        be = create_backend(OnnxBackend()).load(d / f, 160, NAMES)
        assert isinstance(
            be.infer(cv2.imread(str(next((tmp_path / "raw" / "images").iterdir())))), list
        )
    assert no_network == [], f"training tried to reach the network: {no_network}"
