"""Item verdicts scored against the simulator's truth (`edge eval`, the item-level evaluation).

`score_against_truth` compares each item's predicted verdict and reasons with what the
simulator says the item is: escapes (a defective item passed), critical escapes, false
rejects, recall and precision per reason code, and recall per defect class (the share of
the items carrying a class that were rejected, for whatever reason: a novel defect
caught as a PARTICLE still stopped the item; which reason caught it is counted too).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

CRITICAL = "critical"


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not JSON: {exc.msg}") from None
    return out


def score_against_truth(truth: list[dict[str, Any]], pred: list[dict[str, Any]]) -> dict[str, Any]:
    """Escape, critical-escape and false-reject rates, recall per reason and class, confusion."""
    by_id = {p["id"]: p for p in pred}
    missing = [t["id"] for t in truth if t["id"] not in by_id]
    confusion: dict[str, Counter[str]] = {"PASS": Counter(), "REJECT": Counter()}
    reason_tp: Counter[str] = Counter()
    reason_fn: Counter[str] = Counter()
    reason_pred: Counter[str] = Counter()
    reason_pred_correct: Counter[str] = Counter()
    escapes = crit_items = crit_escapes = exp_pass = false_rejects = exp_reject = 0
    escaped_ids: dict[str, list[str]] = defaultdict(list)
    class_n: Counter[str] = Counter()
    class_rejected: Counter[str] = Counter()
    class_by: dict[str, Counter[str]] = defaultdict(Counter)
    class_escaped: dict[str, list[str]] = defaultdict(list)
    for t in truth:
        p = by_id.get(t["id"])
        got = p["verdict"] if p else "MISSING"
        exp = t["expected"]
        confusion[exp][got] += 1
        preds = set(p.get("reasons", [])) if p else set()
        exp_reasons = set(t.get("reasons", []))
        critical = any(d.get("severity") == CRITICAL for d in t.get("defects", []))
        crit_items += critical
        for c in {d["class"] for d in t.get("defects", []) if "class" in d}:
            class_n[c] += 1
            if got == "REJECT":
                class_rejected[c] += 1
                class_by[c].update(preds)
            else:
                class_escaped[c].append(t["id"])
        if exp == "REJECT":
            exp_reject += 1
            if got != "REJECT":
                escapes += 1
                crit_escapes += critical
                for r in exp_reasons:
                    escaped_ids[r].append(t["id"])
        else:
            exp_pass += 1
            if got != "PASS":
                false_rejects += 1
        for r in exp_reasons:
            if r in preds:
                reason_tp[r] += 1
            else:
                reason_fn[r] += 1
        for r in preds:
            reason_pred[r] += 1
            if r in exp_reasons:
                reason_pred_correct[r] += 1
    per_reason = {}
    for r in sorted(set(reason_tp) | set(reason_fn) | set(reason_pred)):
        n_exp = reason_tp[r] + reason_fn[r]
        per_reason[r] = {
            "expected": n_exp,
            "predicted": reason_pred[r],
            "recall": round(reason_tp[r] / n_exp, 4) if n_exp else None,
            "precision": round(reason_pred_correct[r] / reason_pred[r], 4)
            if reason_pred[r]
            else None,
            "escaped_ids": escaped_ids[r][:10],
        }
    per_class = {
        c: {
            "items": class_n[c],
            "rejected": class_rejected[c],
            "recall": round(class_rejected[c] / class_n[c], 4),
            "rejected_by": dict(class_by[c].most_common()),
            "escaped_ids": class_escaped[c][:10],
        }
        for c in sorted(class_n)
    }
    report = {
        "items": len(truth),
        "missing_predictions": len(missing),
        "expected_reject": exp_reject,
        "expected_pass": exp_pass,
        "escapes": escapes,
        "escape_rate": round(escapes / exp_reject, 5) if exp_reject else 0.0,
        "critical_items": crit_items,
        "critical_escapes": crit_escapes,
        "critical_escape_rate": round(crit_escapes / crit_items, 5) if crit_items else 0.0,
        "false_rejects": false_rejects,
        "false_reject_rate": round(false_rejects / exp_pass, 5) if exp_pass else 0.0,
        "per_reason": per_reason,
        "per_class": per_class,
        "confusion": {e: dict(c) for e, c in confusion.items()},
    }
    per_view = recall_per_view(truth, by_id)
    if per_view:
        report["per_view"] = per_view
    return report


def recall_per_view(
    truth: list[dict[str, Any]], by_id: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Several cameras (`edge sim --views N`): for each view, the defective items only that
    view could see (`seen_in` is that view alone) and how many of them were rejected; the
    recall a station loses if that camera goes blind. Empty for a single-view export."""
    seen: Counter[int] = Counter()
    caught: Counter[int] = Counter()
    escaped: dict[int, list[str]] = defaultdict(list)
    for t in truth:
        where = t.get("seen_in")
        if t.get("views", 1) < 2 or t.get("expected") != "REJECT" or not where or len(where) != 1:
            continue
        v = int(where[0])
        seen[v] += 1
        p = by_id.get(t["id"])
        if p is not None and p.get("verdict") == "REJECT":
            caught[v] += 1
        else:
            escaped[v].append(t["id"])
    return {
        str(v): {
            "defects_only_here": seen[v],
            "rejected": caught[v],
            "recall": round(caught[v] / seen[v], 4),
            "escaped_ids": escaped[v][:10],
        }
        for v in sorted(seen)
    }
