"""Starting weights for training, from a detector that ships with the project.

A technician has tens of photos, not thousands: a detector trained from random weights on
so few learns nothing useful (seen: all metrics 0 after 50 epochs). So training starts
from the project's own approved detector. Its trained weights ship only as the exported
ONNX (BatchNormalization folded into each convolution); nothing may be downloaded at run
time, so the weights are read back from that file into the architecture it was trained
from (the card's `arch`): each folded convolution becomes a convolution followed by an
identity BatchNormalization carrying the folded bias, which trains like the original.

An identity BatchNormalization reproduces the shipped detector only in evaluation mode. In
training mode it normalises each convolution's output by the batch's own mean and
variance, so the first steps start from a different network, and the running statistics
drift from (0, 1) towards the batch's: validation losses jumped from epoch to epoch and a
short run learnt little. `inflate_batchnorm` gives each BatchNormalization the statistics
of its input on the product's own images (the shipped detector's function unchanged in
evaluation mode, and nearly so in training mode).

The last convolution of the class branch has one output per class, so it is rebuilt for
the new product's class list (`retarget_classes`): a class the shipped detector knows keeps
its own row; a new class (a capsule defect) starts from the mean of the shipped defect
classes' rows. Left to ultralytics, that layer would start from random weights with a
bias of a one-in-thousands prior, and a few minutes of training on tens of photos end with
every score below the line's threshold (seen: "the FP32 reference detects nothing").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge.models import cards

#: at least this share of the architecture's convolutions must be found in the ONNX file
MIN_MATCHED = 0.9


def arch_path(arch: str) -> Path | None:
    """The card's `arch` as a file: as written, or relative to the project."""
    p = Path(arch)
    if p.is_file():
        return p
    here = Path(__file__).resolve().parents[2] / arch
    return here if here.is_file() else None


def model_from_onnx(onnx_path: str | Path, arch_yaml: str | Path, nc: int) -> Any:
    """The ultralytics DetectionModel of `arch_yaml`, weights read from an exported ONNX."""
    import onnx
    import torch
    from onnx import numpy_helper
    from ultralytics.nn.tasks import DetectionModel

    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(onnx_path)).graph.initializer}
    model = DetectionModel(str(arch_yaml), nc=nc, verbose=False)
    convs = matched = 0
    with torch.no_grad():
        for name, mod in model.named_modules():
            conv = getattr(mod, "conv", None)
            bn = getattr(mod, "bn", None)
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                convs += 1
                w, b = inits.get(f"{name}.conv.weight"), inits.get(f"{name}.conv.bias")
                if w is None or tuple(w.shape) != tuple(conv.weight.shape):
                    continue
                conv.weight.copy_(torch.from_numpy(np.array(w)))
                bn.weight.fill_(1.0)
                bn.bias.copy_(torch.from_numpy(np.array(b)) if b is not None else 0.0)
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
                matched += 1
            elif isinstance(mod, torch.nn.Conv2d) and not name.endswith(".conv"):
                convs += 1
                w, b = inits.get(f"{name}.weight"), inits.get(f"{name}.bias")
                if w is None or tuple(w.shape) != tuple(mod.weight.shape):
                    continue
                mod.weight.copy_(torch.from_numpy(np.array(w)))
                if b is not None and mod.bias is not None:
                    mod.bias.copy_(torch.from_numpy(np.array(b)))
                matched += 1
    # the class branch (nc outputs) is the one part that may not match
    if convs == 0 or matched / convs < MIN_MATCHED - 0.1 * (nc != _onnx_nc(inits)):
        raise ValueError(
            f"{onnx_path}: only {matched} of {convs} convolutions of {arch_yaml} found in it"
        )
    model.eval()
    return model


def _onnx_nc(inits: dict[str, np.ndarray]) -> int:
    heads = [v for k, v in inits.items() if k.endswith(".2.weight") and ".cv3." in k]
    return int(heads[0].shape[0]) if heads else -1


#: training images the BatchNormalization statistics are measured on
STAT_IMAGES = 32


def statistics_images(folder: str | Path, size: int, n: int = STAT_IMAGES) -> np.ndarray:
    """Up to `n` images of `folder`, spread over it by name, as the trainer feeds them:
    `size` x `size`, RGB, 0..1, N x 3 x H x W."""
    import cv2

    from edge.train.dataset import IMAGE_EXT

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXT)
    if len(files) > n:
        files = [files[round(k * (len(files) - 1) / (n - 1))] for k in range(n)]
    out = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            continue
        if img.shape[:2] != (size, size):
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
        out.append(img[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) / 255.0)
    return np.stack(out) if out else np.zeros((0, 3, size, size), np.float32)


def inflate_batchnorm(model: Any, images: np.ndarray, batch: int = 8) -> int:
    """Give every BatchNormalization of `model` the per-channel mean and variance of its
    input over `images` (N x 3 x H x W, RGB, 0..1) and the scale and shift that undo them,
    so that it computes what it computed before (z + folded bias) in evaluation mode, and
    about the same in training mode, where it normalises by the batch's statistics.
    Returns the number of layers set."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    sums: dict[int, list[torch.Tensor]] = {}

    def hook(mod, inp, _out):
        z = inp[0].detach().double()
        s = sums.setdefault(id(mod), [torch.zeros(z.shape[1], dtype=torch.float64)] * 3)
        sums[id(mod)] = [
            s[0] + z.sum((0, 2, 3)),
            s[1] + (z * z).sum((0, 2, 3)),
            s[2] + z[:, 0].numel(),
        ]

    handles = [m.register_forward_hook(hook) for m in bns]
    model.eval()
    try:
        with torch.no_grad():
            for k in range(0, len(images), batch):
                model(torch.from_numpy(np.ascontiguousarray(images[k : k + batch], np.float32)))
    finally:
        for h in handles:
            h.remove()
    done = 0
    with torch.no_grad():
        for m in bns:
            if id(m) not in sums:
                continue
            total, sq, n = sums[id(m)]
            mean = total / n
            var = (sq / n - mean * mean).clamp(min=0.0)
            std = torch.sqrt(var + m.eps)
            # before: a z + c; after: (z - mean) / std * (a std) + (c + a mean) = a z + c
            a = m.weight.double() / torch.sqrt(m.running_var.double() + m.eps)
            c = m.bias.double() - m.running_mean.double() * a
            m.weight.copy_((a * std).float())
            m.bias.copy_((c + a * mean).float())
            m.running_mean.copy_(mean.float())
            m.running_var.copy_(var.float())
            done += 1
    return done


#: classes of the shipped detector that are not defects: never the start of a new class
NOT_DEFECTS = ("code",)


def retarget_classes(model: Any, names: list[str]) -> dict[str, str]:
    """Rebuild the class outputs of `model`'s detection head for `names` (in place).

    A name the model knows keeps its row; a new name starts from the mean of the rows of
    the model's defect classes (weights and bias), so its scores start where the shipped
    detector's defect scores are, not at random. Returns where each class came from."""
    import torch

    old = [model.names[i] for i in sorted(model.names)]
    defects = [i for i, n in enumerate(old) if n not in NOT_DEFECTS] or list(range(len(old)))
    head = model.model[-1]
    origin = {
        n: (n if n in old else f"mean of {len(defects)} shipped defect classes") for n in names
    }
    with torch.no_grad():
        for branch in head.cv3:
            last = branch[-1]
            new = torch.nn.Conv2d(last.in_channels, len(names), 1, bias=True)
            for k, n in enumerate(names):
                rows = [old.index(n)] if n in old else defects
                new.weight[k] = last.weight[rows].mean(0)
                new.bias[k] = last.bias[rows].mean()
            branch[-1] = new
    head.nc = len(names)
    head.no = head.nc + head.reg_max * 4
    model.nc = len(names)
    model.yaml["nc"] = len(names)
    model.names = dict(enumerate(names))
    return origin


def shipped_start(
    roots: Any,
    out_pt: str | Path,
    name: str = "defects",
    class_names: list[str] | None = None,
    images: np.ndarray | None = None,
) -> dict[str, Any] | None:
    """Write the approved `name` detector's weights as an ultralytics checkpoint to start
    training from, its class outputs rebuilt for `class_names` (the dataset's) when given;
    returns what the card records (model, version, SHA-256, where each class's outputs
    came from), or None when there is no approved detector whose architecture ships with
    the project. With `images` (the product's training images, N x 3 x H x W, RGB, 0..1)
    the BatchNormalization layers get their statistics (`inflate_batchnorm`)."""
    import torch

    from edge.models.registry import ModelRegistry

    reg = ModelRegistry(roots)
    card = reg.approved(name)
    if card is None or card.task != "detect":
        return None
    arch = arch_path(card.arch)
    if arch is None:
        return None
    opened = reg.open_model(name, card.version, precision="fp32")
    model = model_from_onnx(opened.path, arch, len(card.classes))
    model.names = dict(enumerate(card.classes))
    inflated = inflate_batchnorm(model, images) if images is not None and len(images) else 0
    origin = retarget_classes(model, list(class_names)) if class_names else None
    out_pt = Path(out_pt)
    out_pt.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "train_args": {}, "epoch": -1}, out_pt)
    return {
        "model": name,
        "version": card.version,
        "sha256": card.files.get(cards.FP32),
        "arch": card.arch,
        "class_rows": origin,
        "batchnorm_from_images": len(images) if inflated else 0,
    }
