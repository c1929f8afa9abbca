"""YOLO label files: one line per box, `class cx cy w h`, normalised to the image size.

The one writer for every data set the project makes (the simulator's export and the
labeller's frozen datasets), so the trainer reads one format whoever drew the boxes.
Imports nothing of the project: the labeller uses it without the simulator.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path


def box_line(cls_index: int, bbox: Sequence[float], width: int, height: int) -> str:
    """One label line for a box [x, y, w, h] in pixels of a `width` x `height` image."""
    x, y, w, h = bbox
    return (
        f"{cls_index} {(x + w / 2) / width:.6f} {(y + h / 2) / height:.6f} "
        f"{w / width:.6f} {h / height:.6f}"
    )


def label_lines(
    boxes: Iterable[tuple[str, Sequence[float]]],
    classes: Sequence[str],
    width: int,
    height: int,
) -> list[str]:
    """Lines for (class name, [x, y, w, h]) boxes, the class's index in `classes`.

    A box without area (clipped off the image) is left out: YOLO cannot learn from it.
    A class not in `classes` is a ValueError.
    """
    out = []
    for cls, (x, y, w, h) in boxes:
        if w <= 0 or h <= 0:
            continue
        if cls not in classes:
            raise ValueError(f"class {cls!r} is not in the data set's classes {list(classes)}")
        out.append(box_line(classes.index(cls), (x, y, w, h), width, height))
    return out


def write_labels(path: str | Path, lines: Iterable[str]) -> None:
    """The label file of one image: every line ends in a newline; no boxes, an empty file."""
    Path(path).write_text("".join(line + "\n" for line in lines))
