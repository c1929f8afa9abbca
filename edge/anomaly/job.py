"""The web UI's fit job: a good-only anomaly model from images the technician picked.

Runs in the low-priority job process (`edge.web.jobrun anomaly_fit`), teaching side
(torch). The picked images are the image store's files (line images or uploads), named
by their SHA-256; the job links them into two folders of its own, never copies them:

* every `hold_every`-th image (in the order picked) is **held back**: not fitted on, it
  is what `verify` compares INT8 with FP32 on (the issue asks for held images), and its
  scores against the fitted model are the page's "unseen good" check of the threshold;
* the others are the **teach set** `edge anomaly fit` would be given.

The result (threshold, held-out scores of the teach set, far-out good images by SHA-256,
the unseen good images' scores, the verify summary) goes into the job's "finished"
event; the page draws it. The candidate then goes through approval like any model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.anomaly.teach_set import split


def link_images(folder: Path, images: dict[str, str], shas: list[str]) -> Path:
    """Symbolic links `<sha>.png` -> the store's file, so the card's manifest hashes the
    images themselves and far-out images are named by their SHA-256."""
    folder.mkdir(parents=True, exist_ok=True)
    for sha in shas:
        (folder / f"{sha}.png").symlink_to(Path(images[sha]).resolve())
    return folder


def options(args: dict[str, Any]) -> Any:
    """The fit's options from the job's arguments (the form's fields)."""
    from edge.anomaly.fit import FitOptions

    w, h = (int(v) for v in str(args.get("input") or "768x512").lower().split("x"))
    return FitOptions(
        input_hw=(h, w),
        memory_size=int(args.get("memory") or 2000),
        target_frr=float(args.get("target_frr") or 0.01),
        threads=int(args.get("threads") or 1),
    )


def run_fit(args: dict[str, Any], d: Path, progress: Any) -> dict[str, Any]:
    """Fit, verify on the held-back images, and report what the page shows."""
    from edge.anomaly.fit import fit
    from edge.anomaly.verify import verify
    from edge.models import cards
    from edge.models.registry import ModelRegistry

    images: dict[str, str] = dict(args["images"])  # sha -> file in the image store
    teach, held = split(list(images), int(args.get("hold_every") or 5))
    good_dir = link_images(d / "good", images, teach)
    held_dir = link_images(d / "held", images, held)
    name, version = args["name"], args["version"]
    roi = tuple(args["roi"]) if args.get("roi") else None
    progress({"stage": "fitting", "teach": len(teach), "held": len(held)})
    card = fit(
        [good_dir],
        name,
        version,
        args["models_dir"],
        roi,  # type: ignore[arg-type]
        options(args),
        by=args.get("by"),
        progress=lambda msg: progress({"stage": "fitting", "step": msg}),
    )
    reg = ModelRegistry(args["models_dir"])
    model_dir = reg.path(name, version)
    try:  # from here a failure leaves a version that must never be offered for approval
        card = cards.load_card(model_dir)
        card.dataset = {
            **(card.dataset or {}),
            "good_dirs": [f"image store, web job {d.name}"],
            "images_sha256": sorted(teach),
            "held_back_sha256": sorted(held),
            "product": args.get("product"),
        }
        cards.save_card(model_dir, card)
        progress({"stage": "verifying", "name": name, "version": version})
        rep = verify(model_dir, held_dir, limit=len(held))
    except BaseException as exc:
        reg.mark_failed(name, version, f"{type(exc).__name__}: {exc}", by=args.get("by"))
        raise
    spec = (cards.load_card(model_dir).model_extra or {}).get("anomaly") or {}
    threshold = float(spec["threshold"])
    unseen = {Path(k).stem: v for k, v in (rep.get("scores") or {}).items()}
    return {
        "name": name,
        "version": version,
        "threshold": threshold,
        "target_frr": spec.get("target_frr"),
        "teach": len(teach),
        "held": len(held),
        "outliers": [Path(o).stem for o in spec.get("outliers") or []],
        "unseen": unseen,
        "unseen_above": sum(1 for s in unseen.values() if s > threshold),
        "verify": rep.get("summary"),
        "verify_passed": bool(rep.get("passed")),
    }
