"""Where a training job starts from, and which start is proposed for a dataset.

    shipped    the project's approved `defects` detector (yolo11n, learnt on simulated
               vials), fine-tuned whole on crops (`edge.train.start_weights`, ultralytics)
    imagenet   a head-only detector on a frozen backbone that installs with its ImageNet
               weights (`edge.train.patch_detector`): for products the shipped detector
               never saw, whose defects its simulated-vial features do not separate

The proposal: the shipped detector when every class of the dataset is one it knows (its
features were learnt for exactly those), the ImageNet backbone otherwise (a new product
with its own classes). The technician may choose the other; the card records the start.
A head-only architecture is a new file with a `train_*` function of the same signature as
`patch_detector.train_patch_detector`, named in `HEAD_ONLY`.
"""

from __future__ import annotations

from typing import Any, Literal

Start = Literal["shipped", "imagenet"]
STARTS: tuple[str, ...] = ("shipped", "imagenet")

#: start -> "module:function" training a head-only detector and writing its FP32 ONNX
HEAD_ONLY = {"imagenet": "edge.train.patch_detector:train_patch_detector"}

#: the shipped detector a "shipped" start fine-tunes
SHIPPED_MODEL = "defects"


def shipped_classes(roots: Any, name: str = SHIPPED_MODEL) -> list[str]:
    """The classes of the approved shipped detector ([] when there is none)."""
    from edge.models.registry import ModelRegistry

    card = ModelRegistry(roots).approved(name)
    return list(card.classes) if card is not None and card.task == "detect" else []


def propose(classes: list[str], known: list[str]) -> dict[str, str]:
    """The proposed start for a dataset's `classes`, with the reason shown on the page."""
    new = [c for c in classes if c not in known]
    if not known:
        return {"start": "imagenet", "why": "no approved shipped detector to start from"}
    if new:
        return {
            "start": "imagenet",
            "why": f"classes the shipped detector never learnt: {', '.join(new)}",
        }
    return {"start": "shipped", "why": "every class is one the shipped detector knows"}


def head_only_trainer(start: str) -> Any:
    """The training function of a head-only start, imported now."""
    from edge import plugins

    return plugins.load("training start", HEAD_ONLY, start)
