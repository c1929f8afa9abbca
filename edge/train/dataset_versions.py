"""Dataset versions: the technician's labels frozen into a YOLO dataset, never overwritten.

A version (`ds-YYYYMMDD-HHMMSS`) is built from every labelled image at once, split into
train/val by `dataset.prepare`, given a manifest of the SHA-256 of every file, and made
read-only: it is a record that a model card can name, not a working folder. The labels
and images come from the caller (the web layer reads them from the store), so this module
knows files and formats only.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from edge.store.labels import LabelledImage
from edge.store.safe_files import read_regular
from edge.train.dataset import GOOD_VAL_FRACTION, MANIFEST, prepare, write_manifest
from edge.train.yolo_labels import label_lines, write_labels

PREFIX = "ds-"


class DatasetError(ValueError):
    """A version that cannot be built as asked (said in plain words, for the technician)."""


def list_versions(root: Path) -> list[dict[str, Any]]:
    """The dataset versions under `root`, newest first, from their manifests.

    A manifest is read only as a regular file (no link planted in the state directory is
    followed); a folder without one is not a version.
    """
    out = []
    for d in sorted(root.iterdir(), reverse=True):
        m = read_regular(d / MANIFEST, root.parent)  # no planted links
        if d.name.startswith(PREFIX) and not d.is_symlink() and m is not None:
            man = json.loads(m)
            out.append(
                {
                    "version": d.name,
                    "sha256": man.get("sha256"),
                    "files": man.get("count"),
                    "images": man.get("images"),
                    "note": man.get("note"),
                    "created_by": man.get("created_by"),
                    "created_utc": man.get("created_utc"),
                    "product": man.get("product"),
                    "names": man.get("names"),
                }
            )
    return out


def evaluation_sets(root: Path, trained_on: list[dict[str, Any]] | None = None) -> list[str]:
    """Folders under `root` an evaluation can run on (versions and exports), newest first.

    `trained_on` are the `dataset` records of model cards: a set a model was trained on
    (same folder name, or the same manifest under another name) is not an independent
    test set and is not offered.
    """
    used = used_for_training(trained_on or [])
    return sorted(
        (
            d.name
            for d in root.iterdir()
            if d.is_dir() and not d.name.startswith(".") and not _is_used(d, used)
        ),
        reverse=True,
    )


def used_for_training(trained_on: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """(folder names, manifest SHA-256s) of the datasets these cards were trained on."""
    names = {str(t.get("version") or Path(str(t.get("path") or "")).name) for t in trained_on}
    shas = {str(t["manifest_sha256"]) for t in trained_on if t.get("manifest_sha256")}
    return names - {""}, shas


def _is_used(d: Path, used: tuple[set[str], set[str]]) -> bool:
    if d.name in used[0]:
        return True
    m = read_regular(d / MANIFEST, d.parent.parent)
    if m is None:
        return False
    try:
        return json.loads(m).get("sha256") in used[1]
    except ValueError:
        return False


def build_version(
    root: Path,
    labelled: Sequence[LabelledImage],
    read_image: Callable[[str], bytes | None],
    classes: list[str],
    *,
    by: str,
    note: str | None,
    val_fraction: float,
    product: str | None = None,
    good_val_fraction: float = GOOD_VAL_FRACTION,
) -> dict[str, Any]:
    """Freeze every labelled image into a new version under `root`; its summary.

    `classes` is the product's class list (frozen into `data.yaml` and the manifest with
    `product`): a candidate trained on the version carries it on its card.

    `read_image` gives an image's PNG bytes by SHA-256 (None when the store cannot read
    it). Raises DatasetError when fewer than two images are labelled or readable, or when
    the version's name is taken (versions are never overwritten).
    """
    if len(labelled) < 2:
        raise DatasetError("label at least two images first")
    staging = root / f".staging-{uuid.uuid4().hex[:8]}"
    (staging / "images").mkdir(parents=True)
    (staging / "labels").mkdir()
    copied = 0
    try:
        for im in labelled:
            data = read_image(im.sha256)
            if data is None:
                continue
            (staging / "images" / f"{im.sha256}.png").write_bytes(data)
            copied += 1
            lines = label_lines(
                ((b["cls"], b["bbox"]) for b in im.boxes), classes, im.width, im.height
            )
            write_labels(staging / "labels" / f"{im.sha256}.txt", lines)
        if copied < 2:
            raise DatasetError("fewer than two labelled images are readable in the store")
        (staging / "data.yaml").write_text(yaml.safe_dump({"names": classes}))
        version = f"{PREFIX}{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
        out = root / version
        if out.exists():
            raise DatasetError(f"dataset {version} exists: versions are never overwritten")
        prepared = prepare(
            [staging],
            out,
            val_fraction=val_fraction,
            class_names=classes,
            good_fraction=good_val_fraction,
        )
        man = write_manifest(
            out,
            extra={
                # the split as drawn (the training page says how many defect photos
                # validation holds) and the examples per class; the staging folder's
                # path is not kept
                "split": prepared["split"],
                "examples": prepared["examples"],
                "names": classes,
                "images": len(labelled),
                "note": note,
                "created_by": by,
                "created_utc": time.time(),
                "version": version,
                "product": product,
            },
        )
        freeze(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {
        "version": version,
        "sha256": man["sha256"],
        "images": len(labelled),
        "files": man["count"],
        "product": product,
        "classes": classes,
    }


def freeze(root: Path) -> None:
    """Read-only files: a dataset version is a record, not a working folder."""
    for p in root.rglob("*"):
        if p.is_file():
            os.chmod(p, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
