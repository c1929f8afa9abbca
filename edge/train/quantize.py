"""INT8 quantisation, once, into one artefact every runtime can use.

onnxruntime's static quantisation writes a Q/DQ ONNX (QuantizeLinear/DequantizeLinear
pairs around each quantised op) with symmetric int8 activations and symmetric
per-channel int8 weights: the explicit-quantisation form TensorRT >= 10 builds engines
from, and what ONNX Runtime runs with its int8 kernels on the CPU. Biases stay float:
TensorRT cannot import the INT32 bias DequantizeLinear nodes the quantiser writes by
default, and the CPU session quantises them in memory (edge.inference.onnx).

`quantize_qdq` is the entry point for any model (a path and calibration arrays);
`quantize_onnx` and `quantize` are the detector's (letterboxed images, the head kept in
float, the registry card).

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
A tensor too nearly constant for a histogram keeps its min-max range instead, and the
card says which (edge.train.calibration): one dead channel must not sink the whole job.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edge.inference import yolo
from edge.train import calibration as per_tensor
from edge.train.dataset import IMAGE_EXT, build_manifest

#: the scope a head-only detector's float tail is exported under (edge.train.patch_detector)
FLOAT_SCOPE = "float_tail"
#: a head-only detector's first convolutions, kept in float too: its input is RGB in [0, 1],
#: which symmetric int8 holds in 128 steps, and the stem carries the ImageNet normalisation
#: (x 255 / std); the rounding there grew through eleven blocks to a feature error of a
#: quarter of each channel's spread, and scores moved by up to 0.09 (a good photo flagged by
#: the INT8 file alone). With these two in float: 0.11 of the spread, scores within 0.05,
#: and the file no slower (README, retraining)
FLOAT_INPUT = ("/features/stem/", "/features/blocks.0/")


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
    plus each branch's final logit convolution (/model.N/cv3.K/cv3.K.2/Conv); for a
    head-only detector, every node of its float tail (`/float_tail/...`: logit and box
    convolutions, decode) and of its first convolutions (`FLOAT_INPUT`).
    """
    names = [n.name for n in model.graph.node]
    # a head-only detector (edge.train.patch_detector) puts its float tail under one scope
    tail = [n for n in names if n.startswith(f"/{FLOAT_SCOPE}/")]
    if tail:
        return tail + [n for n in names if n.startswith(FLOAT_INPUT)]
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


class _ArrayReader:
    """CalibrationDataReader over arrays already in memory (one feed dict per sample)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self.feeds = feeds
        self._it = iter(self.feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self.feeds)


#: calibration methods by the names the CLI and the card use
METHODS = ("percentile", "minmax", "entropy")


def quantize_qdq(
    fp32_path: str | Path,
    int8_path: str | Path,
    calibration: Any,
    method: str = "percentile",
    nodes_to_exclude: list[str] | None = None,
) -> dict[str, Any]:
    """Any FP32 ONNX -> INT8 Q/DQ ONNX that TensorRT imports and ONNX Runtime runs.

    `calibration` is what the model's input(s) see in use: a sequence of arrays for a
    single-input model, a sequence of {input name: array} feeds, or an onnxruntime
    CalibrationDataReader. Symmetric INT8 activations and per-channel INT8 weights (what
    TensorRT's explicit quantisation needs); biases stay float (`QuantizeBias: False`:
    TensorRT cannot dequantize the INT32 biases ONNX Runtime would otherwise write, and
    folds float biases into its INT8 convolutions itself). The result is checked with
    `check_qdq_model`; a file TensorRT would refuse raises ValueError and is removed.
    Returns what a model card records about it.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from edge.inference.base import BackendError
    from edge.inference.qdq_check import check_qdq_model

    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r} (known: {list(METHODS)})")
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    reader = calibration
    samples: int | None = None
    if not hasattr(calibration, "get_next"):
        model = onnx.load(str(fp32_path))
        inits = {i.name for i in model.graph.initializer}
        names = [i.name for i in model.graph.input if i.name not in inits]
        given = list(calibration)
        if not given:
            raise ValueError("no calibration samples")
        if any(not isinstance(s, dict) for s in given) and len(names) != 1:
            raise ValueError(f"{fp32_path} has inputs {names}: give feed dicts, not arrays")
        feeds = [
            s if isinstance(s, dict) else {names[0]: np.ascontiguousarray(s, dtype=np.float32)}
            for s in given
        ]
        reader, samples = _ArrayReader(feeds), len(feeds)
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    # ranges per tensor, robust to near-constant ones (edge.train.calibration), handed to
    # ONNX Runtime's quantiser in place of its own calibration: the Q/DQ writing is unchanged
    thresholds, fallbacks = per_tensor.ranges(fp32_path, reader, method)
    with per_tensor.precomputed(thresholds, method) as options:
        quantize_static(
            model_input=str(fp32_path),
            model_output=str(int8_path),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[method],
            nodes_to_exclude=list(nodes_to_exclude or []),
            extra_options={
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                "QuantizeBias": False,
            },
            **options,
        )
    try:
        check = check_qdq_model(int8_path)
    except BackendError as exc:
        int8_path.unlink(missing_ok=True)
        raise ValueError(str(exc)) from None
    return {
        "format": "QDQ",
        "activations": "int8 symmetric",
        "weights": "int8 symmetric per-channel",
        "biases": "float (not quantised)",
        "method": method,
        "calibrated_tensors": len(thresholds),
        "calibration_fallbacks": per_tensor.summary(fallbacks),
        **({"samples": samples} if samples is not None else {}),
        "excluded_nodes": len(nodes_to_exclude or []),
        "tensorrt_check": {"passed": True, "dequantize_linear": check["dequantize_linear"]},
    }


def quantize_onnx(
    fp32_path: str | Path,
    int8_path: str | Path,
    calibration_dir: str | Path,
    method: str = "percentile",
    limit: int | None = None,
) -> dict[str, Any]:
    """A YOLO detector's FP32 ONNX -> INT8 Q/DQ ONNX, calibrated on letterboxed images.

    The detector's decode tail and logit convolutions stay in float (see the module
    docstring). Returns what the card records about it.
    """
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    model = onnx.load(str(fp32_path))
    inp = model.graph.input[0]
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[0] != 1 or dims[2] != dims[3] or min(dims) <= 0:
        raise ValueError(f"{fp32_path}: need a static 1x3xSxS input, found {dims}")
    size = dims[2]
    files = calibration_images(calibration_dir)
    if limit and len(files) > limit:  # evenly spread: sorted names often group by kind
        step = (len(files) - 1) / max(limit - 1, 1)
        files = [files[round(i * step)] for i in range(limit)]
    exclude = head_nodes_to_exclude(model)
    info = quantize_qdq(
        fp32_path, int8_path, _Reader(files, inp.name, size), method, nodes_to_exclude=exclude
    )
    man = build_manifest(calibration_dir)
    return {**info, "images": len(files), "calibration_manifest_sha256": man["sha256"]}


def quantize(
    model_dir: str | Path,
    calibration_dir: str | Path = "calibration",
    method: str = "percentile",
    limit: int | None = None,
) -> Path:
    """`edge quantize`: add model.int8.onnx to a registry version folder and record it in its card."""
    from edge.models import cards

    model_dir = Path(model_dir)
    card = cards.load_card(model_dir)
    if card.status != "candidate":
        raise cards.ModelError(
            f"{card.name} {card.version} is {card.status}: quantise a new candidate instead"
        )
    info = quantize_onnx(
        model_dir / cards.FP32, model_dir / cards.INT8, calibration_dir, method, limit=limit
    )
    card.quantization = info
    card.calibration = {
        "path": Path(calibration_dir).as_posix(),
        "manifest_sha256": info["calibration_manifest_sha256"],
        "images": info["images"],
    }
    card.files[cards.INT8] = cards.sha256_file(model_dir / cards.INT8)
    cards.save_card(model_dir, card)
    return model_dir / cards.INT8
