"""A model card's metrics as small tables a technician or QA reads at a glance.

The card keeps its metrics as nested figures (per test set: AP50 per class for the FP32
reference and the INT8 model, instances, mAP50, the test set's manifest hash); the models
page shows them as one table per test set, a row per class, rather than a raw dict. Shapes
this module does not know are still shown, flattened to name and value.
"""

from __future__ import annotations

from typing import Any

PRECISIONS = ("fp32", "int8")


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3f}"
    if v is None:
        return "—"
    if isinstance(v, list):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


def _flat(d: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for k, v in d.items():
        name = f"{prefix} · {k}" if prefix else str(k)
        if isinstance(v, dict):
            out += _flat(v, name)
        elif not (isinstance(v, str) and len(v) == 64 and k.endswith("sha256")):
            out.append((name.replace("_", " "), _fmt(v)))
    return out


def _per_class(title: str, block: dict[str, Any]) -> dict[str, Any]:
    """One test set: a row per class with AP50 of each precision present and instances."""
    precs = [p for p in PRECISIONS if isinstance(block.get(p), dict)]
    classes: list[str] = []
    for p in precs:
        for c in block[p].get("ap50") or {}:
            if c not in classes:
                classes.append(c)
    first = block[precs[0]]
    rows = []
    for c in classes:
        row = [c] + [_fmt((block[p].get("ap50") or {}).get(c)) for p in precs]
        row.append(_fmt((first.get("instances") or {}).get(c)))
        rows.append(row)
    rows.append(["all (mAP50)"] + [_fmt(block[p].get("map50")) for p in precs] + [""])
    note = block.get("test_set") or title
    images = first.get("images")
    return {
        "title": f"{note}" + (f", {images} images" if images is not None else ""),
        "columns": ["class"] + [f"AP50 {p.upper()}" for p in precs] + ["instances"],
        "rows": rows,
    }


def metric_tables(metrics: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Tables (title, columns, rows of strings) for a card's metrics; [] when it has none."""
    if not metrics:
        return []
    tables, rest = [], {}
    for key, block in metrics.items():
        if isinstance(block, dict) and any(isinstance(block.get(p), dict) for p in PRECISIONS):
            tables.append(_per_class(str(key), block))
        else:
            rest[key] = block
    if rest:
        tables.append({"title": "", "columns": ["figure", "value"], "rows": _flat(rest)})
    return tables
