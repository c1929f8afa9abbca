"""A detector for products the shipped detector never saw: frozen ImageNet features and a
small trained head, exported as one ONNX file with the YOLO detector's output layout.

Why: the shipped yolo11n detector learnt its features on *simulated* vials. Fine-tuned on
tens of real capsule photos for 15 CPU minutes it finds 4-5 of 10 unseen defect photos,
while the good-only anomaly tool, on EfficientNet-Lite0 ImageNet features, separates the
same defects almost perfectly (AUROC 0.97). So this detector keeps that backbone frozen
(the same package weights, padding and blocks as `edge.anomaly.export`: nothing is
downloaded) and trains only a head on its stride-8 feature map:

    features  EfficientNet-Lite0 blocks `layers` (default 4 and 10: 40 + 112 channels, the
              deeper map resized to the stride-8 grid), ImageNet normalisation folded into
              the stem (the input is the detector's: RGB in [0, 1], letterboxed)
    head      per cell (1x1 convolutions): D -> hidden -> ReLU -> hidden -> ReLU, then C class
              logits and four distances (left, top, right, bottom; FCOS-style, exp x
              stride) to the box edges; it runs in float, the backbone in INT8
    decode    boxes as centre x, y, width, height in input pixels and sigmoid class scores,
              concatenated to 1 x (4 + C) x N: exactly what `edge.inference.yolo.decode`
              reads, so the defect tool, INT8 quantisation, the operating threshold, verify,
              evaluation and the models page take it unchanged.

Training computes the frozen features of every training and validation photo once (whole
photo letterboxed at the model's input size, the scale `edge.train.sizes` proposes, so
training sees exactly what the line will; a horizontally flipped copy per training photo
as augmentation), then trains the head on the cached cells: every defect cell and a fresh
15 % of the background cells each epoch, drawn from every cell of every photo, so good
photos and the rest of the defect photos are the negatives (hard ones included); focal
loss for the imbalance (a few hundred defect cells in a million). Cells whose centre
lies inside a labelled box are positives (and the cell holding its centre, for a box
smaller than a cell); cells just around a box are neither. The head kept is the one whose
validation photos separate best (defect photos found at the rule the operating threshold
uses, then validation loss). Three heads are trained so, each from its own seed, and their
outputs averaged (`ensemble`): a single head's held-out recall turned on its seed. Minutes
on a CPU, not epochs of a whole network.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from edge.anomaly.export import BACKBONE, BACKBONE_LICENCE
from edge.train.dataset import IMAGE_EXT

# the head's logit and box convolutions and the decode sit under this scope and stay in
# float (edge.train.quantize): one int8 scale cannot hold box pixels and scores at once
from edge.train.quantize import FLOAT_SCOPE

ProgressFn = Callable[[dict[str, Any]], None]

ARCH = "patch-efficientnet-lite0"
STRIDE = 8
#: optimiser steps an epoch at least (the batch shrinks for a few small photos)
MIN_STEPS = 8
#: the lowest class target of a cell inside a box (its edge); the centre's is 1
CENTRE_FLOOR = 0.3


class PatchOptions(BaseModel):
    """What the head is trained with; recorded on the card."""

    layers: list[int] = Field(default_factory=lambda: [4, 10])
    #: each head's width: three heads of 64 cost what one of 128 did, and found 8 of 10
    #: unseen capsule defects where three of 128 found 7 (README, retraining)
    hidden: int = Field(64, ge=8, le=512)
    epochs: int = Field(20, ge=1, le=1000)
    #: cells per optimiser step
    batch: int = Field(8192, ge=64)
    #: share of the background cells drawn afresh each epoch (every defect cell is in each)
    negatives: float = Field(0.15, gt=0, le=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    #: focal loss (Lin et al.): down-weights the many easy background cells
    gamma: float = Field(2.0, ge=0)
    alpha: float = Field(0.25, gt=0, lt=1)
    #: a horizontally flipped copy of each training photo (features computed on it)
    hflip: bool = True
    #: heads trained (seeds `seed`, `seed` + 1, ...) whose outputs are averaged: one head's
    #: threshold and held-out recall turn on its seed (capsules: 0.6-0.9 over four seeds)
    heads: int = Field(3, ge=1, le=8)
    seed: int = 0


def _fold_input(mod: Any) -> None:
    """Make the backbone take the detector's input (RGB in [0, 1]) instead of ImageNet-
    normalised pixels: the stem convolution's weights carry 255 / std per input channel and
    its BatchNormalization's mean carries the mean's share. Exact except at the image
    border, where zero padding is now black rather than the mean colour; training sees the
    same graph, so it learns what the line runs."""
    import torch

    from edge.anomaly.features import MEAN, STD

    conv, bn = mod.stem[0], mod.stem[1]
    mean = torch.tensor(MEAN / STD, dtype=torch.float32).view(1, 3, 1, 1)
    scale = torch.tensor(255.0 / STD, dtype=torch.float32).view(1, 3, 1, 1)
    with torch.no_grad():
        shift = (conv.weight * mean).sum((1, 2, 3))
        conv.weight.mul_(scale)
        bn.running_mean.add_(shift)


def backbone(size: int, layers: list[int]) -> Any:
    """The frozen feature graph for a size x size detector input (`edge.anomaly.export`)."""
    from edge.anomaly.export import feature_module

    mod = feature_module(size, size, sorted(set(layers)), pool=1)
    _fold_input(mod)
    for p in mod.parameters():
        p.requires_grad_(False)
    return mod.eval()


def _head(dim: int, nc: int, hidden: int) -> Any:
    import torch
    from torch import nn

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(dim, hidden, 1),
                nn.ReLU(),
                nn.Conv2d(hidden, hidden, 1),
                nn.ReLU(),
            )
            self.cls = nn.Conv2d(hidden, nc, 1)
            self.box = nn.Conv2d(hidden, 4, 1)
            with torch.no_grad():  # a 1 % prior: the first steps are not swamped by background
                self.cls.bias.fill_(-4.6)
                self.box.bias.fill_(float(np.log(1.5)))

        def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = self.body(f)
            return self.cls(h), self.box(h)

    return Head()


def ensemble(heads: list[Any]) -> Any:
    """Heads whose class logits and log box distances are averaged: one module, exported
    in float as one head is."""
    import torch
    from torch import nn

    class Ensemble(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.members = nn.ModuleList(heads)

        def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            outs = [m(f) for m in self.members]
            if len(outs) == 1:
                return outs[0]
            return (
                torch.stack([o[0] for o in outs]).mean(0),
                torch.stack([o[1] for o in outs]).mean(0),
            )

    return Ensemble().eval()


class _Decode:
    """Cell outputs -> 1 x (4 + C) x N (xywh in input pixels, sigmoid scores)."""

    @staticmethod
    def module(grid: tuple[int, int]) -> Any:
        import torch
        from torch import nn

        gh, gw = grid
        ys, xs = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
        centres = np.stack([xs.ravel(), ys.ravel()])[None].astype(np.float32)
        centres = (centres + 0.5) * STRIDE

        class Decode(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.register_buffer("centres", torch.from_numpy(centres))

            def forward(self, logits: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
                d = torch.exp(box.clamp(max=6.0)).flatten(2) * STRIDE  # l, t, r, b
                c = self.centres
                cx = c[:, 0:1] + (d[:, 2:3] - d[:, 0:1]) / 2
                cy = c[:, 1:2] + (d[:, 3:4] - d[:, 1:2]) / 2
                w, h = d[:, 0:1] + d[:, 2:3], d[:, 1:2] + d[:, 3:4]
                return torch.cat([cx, cy, w, h, torch.sigmoid(logits.flatten(2))], 1)

        return Decode()


def detector_module(features: Any, head: Any, grid: tuple[int, int]) -> Any:
    """features -> head -> decode, as one module to export. The head and the decode sit
    under `FLOAT_SCOPE`, which the quantiser leaves in float: the INT8 backbone does the
    work; a quantised head moved boxes by a fifth of their size (verify: mean box IoU 0.80
    on 14 px spots) for a few per cent of the time."""
    from torch import nn

    class FloatTail(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = head
            self.decode = _Decode.module(grid)

        def forward(self, f):  # type: ignore[no-untyped-def]
            return self.decode(*self.head(f))

    class Detector(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = features
            setattr(self, FLOAT_SCOPE, FloatTail())

        def forward(self, x):  # type: ignore[no-untyped-def]
            return getattr(self, FLOAT_SCOPE)(self.features(x))

    return Detector().eval()


# -- data


def _photos(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXT)


def _labels(lbl: Path) -> list[tuple[int, float, float, float, float]]:
    if not lbl.is_file():
        return []
    rows = [r.split() for r in lbl.read_text().splitlines()]
    return [(int(r[0]), *(float(v) for v in r[1:5])) for r in rows if len(r) >= 5]


def _boxes_in_input(rows: list, lb: Any) -> np.ndarray:
    """YOLO rows (normalised to the photo) -> class, x1, y1, x2, y2 in letterboxed pixels."""
    out = []
    for c, cx, cy, bw, bh in rows:
        x1, y1 = (cx - bw / 2) * lb.width, (cy - bh / 2) * lb.height
        x2, y2 = (cx + bw / 2) * lb.width, (cy + bh / 2) * lb.height
        s = lb.scale
        out.append((c, x1 * s + lb.pad_x, y1 * s + lb.pad_y, x2 * s + lb.pad_x, y2 * s + lb.pad_y))
    return np.asarray(out, dtype=np.float32).reshape(-1, 5)


def targets(boxes: np.ndarray, grid: tuple[int, int], nc: int) -> tuple[np.ndarray, ...]:
    """Per cell: class target (C x gh x gw, the centredness inside a box), a weight (0 for the ring of
    cells just around a box: neither defect nor background) and the l, t, r, b distances
    of the box each positive cell predicts (the smallest holding it)."""
    gh, gw = grid
    cls = np.zeros((nc, gh, gw), np.float32)
    weight = np.ones((gh, gw), np.float32)
    ltrb = np.zeros((4, gh, gw), np.float32)
    pos = np.zeros((gh, gw), bool)
    area = np.full((gh, gw), np.inf, np.float32)
    px = (np.arange(gw, dtype=np.float32) + 0.5) * STRIDE
    py = (np.arange(gh, dtype=np.float32) + 0.5) * STRIDE
    for _c, x1, y1, x2, y2 in boxes:
        a = STRIDE  # the ring around a box, ignored
        ix = (px >= x1 - a) & (px <= x2 + a)
        iy = (py >= y1 - a) & (py <= y2 + a)
        weight[np.ix_(iy, ix)] = 0.0
    for c, x1, y1, x2, y2 in boxes:
        inside = ((py >= y1) & (py <= y2))[:, None] & ((px >= x1) & (px <= x2))[None, :]
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        i, j = min(int(cy // STRIDE), gh - 1), min(int(cx // STRIDE), gw - 1)
        inside[max(i, 0), max(j, 0)] = True
        ar = (x2 - x1) * (y2 - y1)
        take = inside & (ar < area)
        area[take] = ar
        pos |= inside
        yy, xx = np.nonzero(take)
        ltrb[0, yy, xx] = np.maximum(px[xx] - x1, 1.0)
        ltrb[1, yy, xx] = np.maximum(py[yy] - y1, 1.0)
        ltrb[2, yy, xx] = np.maximum(x2 - px[xx], 1.0)
        ltrb[3, yy, xx] = np.maximum(y2 - py[yy], 1.0)
        # the class target is the cell's centredness (FCOS), not 1: cells at a box's edge
        # score lower than its centre, so one box wins the suppression instead of a
        # cluster of fragments that an INT8 rounding reshuffles
        lr, tb = ltrb[[0, 2]][:, yy, xx], ltrb[[1, 3]][:, yy, xx]
        ctr = np.sqrt((lr.min(0) / lr.max(0)) * (tb.min(0) / tb.max(0)))
        cls[int(c), yy, xx] = np.maximum(cls[int(c), yy, xx], np.clip(ctr, CENTRE_FLOOR, 1.0))
    weight[pos] = 1.0
    return cls, weight, ltrb, pos


def cache_features(
    data: Path, split: str, feats: Any, size: int, nc: int, hflip: bool
) -> dict[str, Any]:
    """Frozen features (float16) and targets of every photo of a split, once."""
    import cv2
    import torch

    from edge.inference.yolo import letterbox

    out: dict[str, list] = {"f": [], "cls": [], "w": [], "ltrb": [], "pos": [], "bad": []}
    for p in _photos(data / "images" / split):
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"unreadable training image {p}")
        rows = _labels(data / "labels" / split / f"{p.stem}.txt")
        x, lb = letterbox(img, size)
        boxes = _boxes_in_input(rows, lb)
        views = [(x, boxes)]
        if hflip:
            fb = boxes.copy()
            fb[:, 1], fb[:, 3] = size - boxes[:, 3], size - boxes[:, 1]
            views.append((np.ascontiguousarray(x[..., ::-1]), fb))
        for xv, bv in views:
            with torch.no_grad():
                f = feats(torch.from_numpy(xv))[0].numpy().astype(np.float16)
            c, w, t, pos = targets(bv, f.shape[-2:], nc)
            for k, v in zip(("f", "cls", "w", "ltrb", "pos"), (f, c, w, t, pos), strict=True):
                out[k].append(v)
            out["bad"].append(bool(len(bv)))
    return {k: np.stack(v) if v else np.zeros(0) for k, v in out.items()}


# -- training


def _cells(cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """Per-view maps -> one row per cell (the ring around each box left out): the head is
    per cell (1x1 convolutions), so training draws cells, not photos."""
    d, c = cache["f"].shape[1], cache["cls"].shape[1]
    keep = cache["w"].reshape(-1) > 0
    return {
        "f": np.ascontiguousarray(cache["f"].transpose(0, 2, 3, 1).reshape(-1, d)[keep]),
        "cls": np.ascontiguousarray(cache["cls"].transpose(0, 2, 3, 1).reshape(-1, c)[keep]),
        "ltrb": np.ascontiguousarray(cache["ltrb"].transpose(0, 2, 3, 1).reshape(-1, 4)[keep]),
        "pos": cache["pos"].reshape(-1)[keep],
    }


def _loss(head: Any, f: Any, t: Any, w: Any, pos: Any, ltrb: Any, norm: float, opt: PatchOptions):
    """Focal loss of the class logits over `norm` positives, plus smooth-L1 on the log
    distances of the positive cells. Tensors are N x K x H x W (cells: H x W = B x 1)."""
    import torch
    import torch.nn.functional as F

    logits, box = head(f)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    # quality focal loss (soft targets): |t - p|^gamma weighs what is still wrong
    at = torch.where(t > 0, opt.alpha, 1 - opt.alpha)
    focal = (at * (t - p).abs() ** opt.gamma * ce * w).sum() / max(norm, 1.0)
    reg = torch.zeros((), dtype=logits.dtype)
    m = pos[:, None].expand_as(box)
    if m.any():  # weighted by centredness, as the scores are
        want = torch.log(ltrb / STRIDE)
        q = t.max(1, keepdim=True).values.expand_as(box)[m]
        err = F.smooth_l1_loss(box[m], want[m], reduction="none")
        reg = (err * q).sum() / max(float(q.sum()), 1.0)
    return focal + reg, logits


def _validate(head: Any, cache: dict[str, Any], opt: PatchOptions) -> dict[str, float]:
    """Validation loss, and the defect photos found at the operating threshold's rule
    (the highest score of each photo; threshold above the validation good photos' but a
    5 % share): what the kept head is chosen by."""
    import torch

    from edge.train.threshold import choose

    losses, top = 0.0, []
    with torch.no_grad():
        for k in range(len(cache["f"])):
            f = torch.from_numpy(cache["f"][k : k + 1].astype(np.float32))
            t = torch.from_numpy(cache["cls"][k : k + 1])
            w = torch.from_numpy(cache["w"][k : k + 1])[:, None]
            pos = torch.from_numpy(cache["pos"][k : k + 1])
            ltrb = torch.from_numpy(cache["ltrb"][k : k + 1])
            loss, logits = _loss(head, f, t, w, pos, ltrb, 1.0, opt)
            losses += float(loss)
            top.append(float(torch.sigmoid(logits).max()))
    bad = [s for s, b in zip(top, cache["bad"], strict=True) if b]
    good = [s for s, b in zip(top, cache["bad"], strict=True) if not b]
    found = choose(bad, good)["validation"]["defect_images_found"] if bad and good else 0
    return {"loss": round(losses / max(len(top), 1), 4), "found": float(found)}


def train_head(
    train: dict[str, Any],
    val: dict[str, Any],
    nc: int,
    opt: PatchOptions,
    deadline: float | None = None,
    on_progress: ProgressFn | None = None,
) -> tuple[Any, dict[str, Any]]:
    """The head trained on cached features; returns (the best head, what happened)."""
    import copy

    import torch

    torch.manual_seed(opt.seed)
    rng = np.random.default_rng(opt.seed)
    cells = _cells(train)
    pos_idx = np.flatnonzero(cells["pos"])
    neg_idx = np.flatnonzero(~cells["pos"])
    n_neg = max(1, round(len(neg_idx) * opt.negatives))
    per_epoch = len(pos_idx) + n_neg
    # a few photos make few cells: at least MIN_STEPS optimiser steps an epoch all the same
    batch = max(64, min(opt.batch, per_epoch // MIN_STEPS))
    # positives expected in a batch: the focal sum's normaliser, the same for every batch
    norm = max(1.0, len(pos_idx) * min(batch, per_epoch) / per_epoch)
    head = _head(int(cells["f"].shape[1]), nc, opt.hidden)
    optim = torch.optim.AdamW(head.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)
    steps = opt.epochs * max(1, -(-per_epoch // batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, opt.lr, total_steps=steps, pct_start=0.1)

    def col(a: np.ndarray, idx: np.ndarray) -> Any:  # rows -> 1 x K x B x 1
        return torch.from_numpy(a[idx].astype(np.float32).T[None, :, :, None].copy())

    best: tuple[tuple[float, float], Any, int] | None = None
    t0 = time.monotonic()
    epoch = 0
    for epoch in range(1, opt.epochs + 1):
        head.train()
        order = np.concatenate([pos_idx, rng.choice(neg_idx, n_neg, replace=False)])
        order = order[rng.permutation(len(order))]
        total = 0.0
        for s in range(0, len(order), batch):
            idx = np.sort(order[s : s + batch])
            pos = torch.from_numpy(cells["pos"][idx])[None, :, None]
            loss, _ = _loss(
                head,
                col(cells["f"], idx),
                col(cells["cls"], idx),
                torch.ones(1, 1, len(idx), 1),
                pos,
                col(cells["ltrb"], idx),
                norm,
                opt,
            )
            optim.zero_grad()
            loss.backward()
            optim.step()
            sched.step()
            total += loss.item()
        head.eval()
        v = _validate(head, val, opt) if len(val["f"]) else {"loss": total, "found": 0.0}
        key = (v["found"], -v["loss"])
        if best is None or key > best[0]:
            best = (key, copy.deepcopy(head.state_dict()), epoch)
        if on_progress is not None:
            on_progress(
                {
                    "stage": "epoch",
                    "epoch": epoch,
                    "epochs": opt.epochs,
                    "metrics": {"train_loss": round(total, 4), **v},
                    "elapsed_s": round(time.monotonic() - t0, 1),
                }
            )
        if deadline is not None and time.monotonic() > deadline:
            break
    assert best is not None
    head.load_state_dict(best[1])
    run = {"epochs_run": epoch, "best_epoch": best[2], "defect_cells": int(len(pos_idx))}
    return head.eval(), {**run, "validation": {"found": best[0][0], "loss": -best[0][1]}}


def train_heads(
    train: dict[str, Any],
    val: dict[str, Any],
    nc: int,
    opt: PatchOptions,
    deadline: float | None = None,
    on_progress: ProgressFn | None = None,
) -> tuple[Any, dict[str, Any]]:
    """`opt.heads` heads, each with its own seed and its share of the time left, averaged
    (`ensemble`). A head not started before the deadline is left out (the record says how
    many were trained)."""
    members, runs = [], []
    for k in range(opt.heads):
        now = time.monotonic()
        if deadline is not None and k and now >= deadline:
            break
        share = None if deadline is None else now + (deadline - now) / (opt.heads - k)

        def tagged(ev: dict[str, Any], k: int = k) -> None:
            if on_progress is not None:
                on_progress({**ev, "head": k + 1, "heads": opt.heads})

        head, run = train_head(
            train, val, nc, opt.model_copy(update={"seed": opt.seed + k}), share, tagged
        )
        members.append(head)
        runs.append(run)
    averaged = ensemble(members)
    found = _validate(averaged, val, opt) if len(val["f"]) else {}
    return averaged, {
        "heads_trained": len(members),
        "epochs_run": sum(r["epochs_run"] for r in runs),
        "members": runs,
        "validation": found,
    }


def train_patch_detector(
    data: str | Path,
    out_path: str | Path,
    imgsz: int,
    minutes: float | None = None,
    options: dict[str, Any] | None = None,
    on_progress: ProgressFn | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Train on a dataset version (images/ and labels/ train and val) and write the FP32
    ONNX to `out_path`. `minutes` bounds the whole (features and head). Returns the card's
    `arch` and `boxes` and what its training record keeps (`start_weights`, options, epochs)."""
    import torch

    from edge.train.dataset import read_class_names

    opt = PatchOptions(**(options or {}))
    if imgsz % 32:
        raise ValueError(f"input size {imgsz}: must be a multiple of 32")
    if threads:
        torch.set_num_threads(int(threads))
    t0 = time.monotonic()
    deadline = t0 + 60 * float(minutes) if minutes else None
    data = Path(data)
    nc = len(read_class_names(data))
    feats = backbone(imgsz, opt.layers)
    if on_progress:
        on_progress({"stage": "features", "imgsz": imgsz, "layers": opt.layers})
    train = cache_features(data, "train", feats, imgsz, nc, opt.hflip)
    val = cache_features(data, "val", feats, imgsz, nc, False)
    if not len(train["f"]):
        raise ValueError(f"no training photos in {data / 'images' / 'train'}")
    feature_s = time.monotonic() - t0
    if on_progress:
        on_progress({"stage": "features", "photos": len(train["f"]), "seconds": feature_s})
    head, run = train_heads(train, val, nc, opt, deadline, on_progress)
    grid = tuple(int(v) for v in train["f"].shape[-2:])
    export(detector_module(feats, head, grid), out_path, imgsz)
    return {
        "arch": ARCH,
        # each cell of a region predicts its own box: one box per region (merged), so the
        # INT8 file and its reference keep the same boxes (edge.inference.yolo.merge_regions)
        "boxes": "merge",
        "start_weights": {
            "kind": "imagenet",
            "backbone": BACKBONE,
            "licence": BACKBONE_LICENCE,
            "frozen_blocks": f"stem..{max(opt.layers)}",
            "feature_layers": opt.layers,
            "stride": STRIDE,
        },
        "head": {**opt.model_dump(), **run, "feature_seconds": round(feature_s, 1)},
    }


def export(module: Any, path: str | Path, imgsz: int) -> Path:
    """Static 1x3xSxS ONNX (opset 17), paddings merged into the convolutions."""
    import torch

    from edge.anomaly.export import slim

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.zeros(1, 3, imgsz, imgsz)
    with torch.no_grad():
        torch.onnx.export(
            module,
            (x,),
            str(path),
            input_names=["images"],
            output_names=["output0"],
            opset_version=17,
            dynamo=False,
        )
    slim(path)
    return path
