"""Datasets: a YOLO-format folder plus a manifest of the SHA-256 of every file.

A model card names the manifest hash of what it was trained on, so the training data
of any approved model can be identified exactly (and checked byte for byte later).

Layout written by `prepare`:

    <out>/images/{train,val}/*.png   <out>/labels/{train,val}/*.txt   <out>/data.yaml
    <out>/manifest.json   {"files": {relpath: sha256}, "sha256": <hash of the file list>}
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import yaml

MANIFEST = "manifest.json"
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest_hash(files: dict[str, str]) -> str:
    """Hash of a manifest: SHA-256 over sorted `sha256  relpath` lines (sha256sum's format)."""
    lines = "".join(f"{files[k]}  {k}\n" for k in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def build_manifest(root: str | Path, exclude: tuple[str, ...] = (MANIFEST,)) -> dict[str, Any]:
    """SHA-256 of every file under `root` (except the manifest itself and caches)."""
    root = Path(root)
    files: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(root).as_posix()
        if rel in exclude or p.suffix == ".cache" or "/." in f"/{rel}":
            continue
        files[rel] = sha256_file(p)
    return {"files": files, "count": len(files), "sha256": manifest_hash(files)}


def write_manifest(root: str | Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    man = build_manifest(root)
    if extra:
        man = {**extra, **man}
    (Path(root) / MANIFEST).write_text(json.dumps(man, indent=1, sort_keys=True) + "\n")
    return man


def read_manifest(root: str | Path) -> dict[str, Any]:
    p = Path(root) / MANIFEST
    if not p.is_file():
        raise FileNotFoundError(f"no {MANIFEST} in {root}")
    return json.loads(p.read_text())


def verify_manifest(root: str | Path) -> list[str]:
    """Differences between the folder and its manifest (empty: the folder is what it says)."""
    man = read_manifest(root)
    now = build_manifest(root)["files"]
    problems = [f"missing: {k}" for k in sorted(set(man["files"]) - set(now))]
    problems += [f"added: {k}" for k in sorted(set(now) - set(man["files"]))]
    problems += [
        f"changed: {k}" for k in sorted(set(now) & set(man["files"])) if now[k] != man["files"][k]
    ]
    if manifest_hash(man["files"]) != man.get("sha256"):
        problems.append("manifest hash does not match its file list")
    return problems


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def read_class_names(source: str | Path) -> list[str]:
    data = yaml.safe_load((Path(source) / "data.yaml").read_text())
    names = data["names"]
    if isinstance(names, dict):
        return [names[k] for k in sorted(names)]
    return list(names)


#: fewer labelled boxes of a class than this and training is refused (a model learnt
#: from a handful of examples finds nothing on new photos, and looks as if it worked)
MIN_EXAMPLES = 8
#: the good photos' share put in validation when a technician freezes a dataset: the
#: operating threshold is set on them (at most 5 % flagged), and with a fifth of 150 good
#: capsule photos (30) it landed below the unseen good photos' tail: 7 of 50 flagged; with
#: half, 2-3 of 50 (README, retraining). Defect photos stay at `val_fraction`: each one
#: in validation is one fewer to learn from.
GOOD_VAL_FRACTION = 0.5


def _boxes_by_class(lbl: Path | None) -> list[int]:
    if lbl is None:
        return []
    return [int(f.split()[0]) for f in lbl.read_text().splitlines() if len(f.split()) >= 5]


def stratified_val(
    pairs: list[tuple[Path, Path | None, str]],
    val_fraction: float,
    seed: int,
    good_fraction: float | None = None,
) -> set[int]:
    """Validation indices drawn separately from defect images and good images, so that
    validation always holds defect images (at least one when there are two or more):
    a validation set of good photos only scores every model 0 and verifies nothing.
    `good_fraction` (default: `val_fraction`) is the good images' share apart: the
    operating threshold is chosen on the validation good photos, and 30 of them decide a
    5 % tail badly."""
    rng = random.Random(seed)
    defect = [k for k, (_i, lbl, _s) in enumerate(pairs) if _boxes_by_class(lbl)]
    good = [k for k in range(len(pairs)) if k not in set(defect)]
    val: set[int] = set()
    for group in (defect, good):
        rng.shuffle(group)
        share = val_fraction if group is defect or good_fraction is None else good_fraction
        n = round(len(group) * share)
        if group is defect and len(group) >= 2:
            n = max(1, n)
        val.update(group[:n])
    if not val:
        val.add(rng.randrange(len(pairs)))
    return val


def class_counts(pairs: list[tuple[Path, Path | None, str]], names: list[str]) -> dict[str, int]:
    counts = dict.fromkeys(names, 0)
    for _img, lbl, _s in pairs:
        for c in _boxes_by_class(lbl):
            if 0 <= c < len(names):
                counts[names[c]] += 1
    return counts


def too_few(counts: dict[str, int], minimum: int = MIN_EXAMPLES) -> list[str]:
    """Plain sentences for each labelled class with too few examples to learn from."""
    return [
        f"too few examples of class {c}: {n} labelled, at least {minimum} are needed"
        for c, n in counts.items()
        if 0 < n < minimum
    ]


def prepare(
    sources: list[str | Path],
    out: str | Path,
    val_fraction: float = 0.15,
    seed: int = 0,
    class_names: list[str] | None = None,
    good_fraction: float | None = None,
) -> dict[str, Any]:
    """Merge exported YOLO folders (images/, labels/, data.yaml) into one train/val dataset.

    All sources must share one class list. Files are hard-linked where possible. Writes
    data.yaml and the manifest; returns the manifest.
    """
    out = Path(out).resolve()
    names = class_names
    pairs: list[tuple[Path, Path | None, str]] = []
    for i, src in enumerate(sources):
        src = Path(src)
        src_names = read_class_names(src) if (src / "data.yaml").is_file() else None
        if names is None:
            names = src_names
        elif src_names is not None and src_names != names:
            raise ValueError(f"{src}: class list {src_names} differs from {names}")
        for img in sorted(p for p in (src / "images").rglob("*") if p.suffix.lower() in IMAGE_EXT):
            rel = img.relative_to(src / "images").with_suffix(".txt")
            lbl = src / "labels" / rel
            pairs.append((img, lbl if lbl.is_file() else None, f"s{i}_{img.stem}"))
    if not names:
        raise ValueError("no class names (no data.yaml in the sources and none given)")
    if not pairs:
        raise ValueError(f"no images found in {[str(s) for s in sources]}")
    val = stratified_val(pairs, val_fraction, seed, good_fraction)
    for split in ("train", "val"):
        for sub in ("images", "labels"):
            d = out / sub / split
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True)
    for k, (img, lbl, stem) in enumerate(pairs):
        split = "val" if k in val else "train"
        _link_or_copy(img, out / "images" / split / f"{stem}{img.suffix.lower()}")
        dst_lbl = out / "labels" / split / f"{stem}.txt"
        if lbl is not None:
            _link_or_copy(lbl, dst_lbl)
        else:
            dst_lbl.write_text("")  # an image with no defects is a negative example
    # no `path` key: ultralytics then resolves train/val beside data.yaml, and the
    # manifest hash does not depend on where the dataset folder sits
    data = {
        "train": "images/train",
        "val": "images/val",
        "names": dict(enumerate(names)),
    }
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    split = {
        name: {
            "images": sum(1 for k in range(len(pairs)) if (k in val) == (name == "val")),
            "defect_images": sum(
                1
                for k, (_i, lbl, _s) in enumerate(pairs)
                if (k in val) == (name == "val") and _boxes_by_class(lbl)
            ),
        }
        for name in ("train", "val")
    }
    return write_manifest(
        out,
        extra={
            "sources": [str(Path(s)) for s in sources],
            "names": list(names),
            "split": split,  # the page says how many defect images validation holds
            "examples": class_counts(pairs, list(names)),
        },
    )


def labelled_pairs(labels_dir: str | Path) -> list[tuple[Path, Path | None, str]]:
    """(image, label, stem) triples of a prepared split, from its label files."""
    return [(Path(), p, p.stem) for p in sorted(Path(labels_dir).glob("*.txt"))]
