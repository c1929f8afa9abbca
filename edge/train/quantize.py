"""INT8 quantisation, once, into one artefact every runtime can use.

onnxruntime's static quantisation writes a Q/DQ ONNX (QuantizeLinear/DequantizeLinear
pairs around each quantised op) with symmetric int8 activations and symmetric
per-channel int8 weights: the explicit-quantisation form TensorRT >= 10 builds engines
from, and what ONNX Runtime runs with its int8 kernels on the CPU.

The detector's decode tail (DFL softmax, anchor arithmetic, the concat of box pixels
with class scores) stays in float: one int8 scale cannot cover box coordinates in
pixels and scores in [0, 1] at once. So do the last 1x1 convolutions of the head's
branches, which emit logits: background cells push the class logits far negative, and
a symmetric int8 scale over that range is about one logit per step, which rounds every
score to sigmoid(k) = 0.50, 0.73, 0.88, 0.95 (seen: false detections at exactly 0.50).
They are six small convolutions; the cost is a few per cent of the INT8 speed-up.

Calibration ranges are the 99.999th percentile of each tensor's histogram by default, not
its min-max: on the default detector, min-max let one outlier set the step of a whole
tensor, and the INT8 model then saw a scratch on a JPEG-compressed good vial that FP32
did not (`edge model verify` failed on 1-2 of 96 images); with percentile it passed 96/96.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edge.inference import yolo
from edge.train.dataset import IMAGE_EXT, build_manifest


def calibration_images(calibration_dir: str | Path) -> list[Path]:
    files = sorted(
        p for p in Path(calibration_dir).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXT
    )
    if not files:
        raise FileNotFoundError(f"no calibration images under {calibration_dir}")
    return files


def head_nodes_to_exclude(model: onnx.ModelProto) -> list[str]:
    """Nodes of the detect head's decode tail: everything of the last module that is not
    one of its convolution branches (ultralytics names them /model.N/cv2.*, /model.N/cv3.*),
    plus each branch's final logit convolution (/model.N/cv3.K/cv3.K.2/Conv).
    """
    names = [n.name for n in model.graph.node]
    mods = [m.group(1) for n in names if (m := re.match(r"^(/model\.\d+)/", n))]
    if not mods:
        return []
    last = max(set(mods), key=lambda s: int(s.rsplit(".", 1)[1]))
    branch = re.compile(rf"^{re.escape(last)}/(one2one_)?cv[23]\.\d+/")
    logits = re.compile(rf"^{re.escape(last)}/(one2one_)?cv[23]\.\d+/(one2one_)?cv[23]\.\d+\.2/")
    return [
        n for n in names if n.startswith(last + "/") and (not branch.match(n) or logits.match(n))
    ]


class _Reader:
    """CalibrationDataReader over letterboxed calibration images."""

    def __init__(self, files: list[Path], input_name: str, size: int):
        import cv2

        self._cv2 = cv2
        self.files, self.input_name, self.size = list(files), input_name, size
        self._it = iter(self.files)

    def get_next(self) -> dict[str, np.ndarray] | None:
        p = next(self._it, None)
        if p is None:
            return None
        img = self._cv2.imread(str(p), self._cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"unreadable calibration image {p}")
        return {self.input_name: yolo.letterbox(img, self.size)[0]}

    def rewind(self) -> None:
        self._it = iter(self.files)


def quantize_onnx(
    fp32_path: str | Path,
    int8_path: str | Path,
    calibration_dir: str | Path,
    method: str = "percentile",
    limit: int | None = None,
) -> dict[str, Any]:
    """FP32 ONNX -> INT8 Q/DQ ONNX. Returns what the card records about it."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    model = onnx.load(str(fp32_path))
    inp = model.graph.input[0]
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[0] != 1 or dims[2] != dims[3] or min(dims) <= 0:
        raise ValueError(f"{fp32_path}: need a static 1x3xSxS input, found {dims}")
    size = dims[2]
    files = calibration_images(calibration_dir)
    if limit:
        files = files[:limit]
    exclude = head_nodes_to_exclude(model)
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    quantize_static(
        model_input=str(fp32_path),
        model_output=str(int8_path),
        calibration_data_reader=_Reader(files, inp.name, size),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=methods[method],
        nodes_to_exclude=exclude,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )
    man = build_manifest(calibration_dir)
    return {
        "format": "QDQ",
        "activations": "int8 symmetric",
        "weights": "int8 symmetric per-channel",
        "method": method,
        "images": len(files),
        "excluded_nodes": len(exclude),
        "calibration_manifest_sha256": man["sha256"],
    }


def quantize(
    model_dir: str | Path, calibration_dir: str | Path = "calibration", method: str = "percentile"
) -> Path:
    """`edge quantize`: add model.int8.onnx to a registry version folder and record it in its card."""
    from edge.train import registry

    model_dir = Path(model_dir)
    card = registry.load_card(model_dir)
    if card.status != "candidate":
        raise registry.ModelError(
            f"{card.name} {card.version} is {card.status}: quantise a new candidate instead"
        )
    info = quantize_onnx(
        model_dir / registry.FP32, model_dir / registry.INT8, calibration_dir, method
    )
    card.quantization = info
    card.calibration = {
        "path": Path(calibration_dir).as_posix(),
        "manifest_sha256": info["calibration_manifest_sha256"],
        "images": info["images"],
    }
    card.files[registry.INT8] = registry.sha256_file(model_dir / registry.INT8)
    registry.save_card(model_dir, card)
    return model_dir / registry.INT8
