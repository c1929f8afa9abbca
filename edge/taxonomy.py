"""The defect taxonomy: what each product can show, which reason codes it causes, how bad.

One home, read by everyone who names a defect: the simulator (ground truth of every
item), the trainer (the detector's class order, the model card's severities), the
labeller (the classes a box can take) and the shipped recipes (their class tables and
the detector's classes per product). It imports only `edge.domain`, so the line, the
web and the trainer can read it without importing the simulator.

The chain is *class -> reason codes -> severity*:

* a **defect class** is a lower-case name (`missing_cap`, `wrong_lot`, `smear`): a
  product defect the detector is trained on, a code defect, a print defect, or a novel
  defect (`fibre`, `dented_cap`): a kind no model was trained on, which only the good-only
  `anomaly` tool can catch (reason `ANOMALY`), so the whole line can be measured on the
  unknown;
* its **reason codes** are what the inspection must give for it (`edge.domain.Reason`,
  append-only; a product defect's code is its name in upper case);
* a reason code's **severity** is stated once (`SEVERITY`); a class is as severe as the
  worst of its reason codes, so the truth and the recipes cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge.domain import Reason, Severity

_CRIT, _MAJOR, _MINOR = Severity.CRITICAL, Severity.MAJOR, Severity.MINOR

#: How bad each finding code is: the severity the ground truth gives a defect that
#: causes it, and the default of the shipped recipes' class tables (a recipe may
#: override it). A code not listed rules as major (`Recipe.rule`).
SEVERITY: dict[Reason, Severity] = {
    Reason.CRACK: _CRIT,
    Reason.PARTICLE: _CRIT,
    Reason.MISSING_CAP: _CRIT,
    Reason.LOW_FILL: _CRIT,
    Reason.CAP_TILT: _MAJOR,
    Reason.HIGH_FILL: _MAJOR,
    Reason.MISSING_LABEL: _MAJOR,
    Reason.SCRATCH: _MINOR,
    Reason.EMPTY_POCKET: _CRIT,
    Reason.BROKEN_TABLET: _CRIT,
    Reason.FOREIGN_TABLET: _CRIT,
    Reason.NO_PRODUCT: _CRIT,
    Reason.IMAGE_ERROR: _CRIT,
    Reason.LIGHTING: _CRIT,
    Reason.NO_READ: _CRIT,
    Reason.NOT_GS1: _CRIT,
    Reason.BAD_CHECK_DIGIT: _CRIT,
    Reason.MISSING_AI: _CRIT,
    Reason.GTIN_MISMATCH: _CRIT,
    Reason.LOT_MISMATCH: _CRIT,
    Reason.EXPIRY_MISMATCH: _CRIT,
    Reason.EXPIRED: _CRIT,
    Reason.SERIAL_INVALID: _CRIT,
    Reason.DUPLICATE_SERIAL: _CRIT,
    Reason.LOW_GRADE: _CRIT,
    Reason.OCV_MISMATCH: _CRIT,
    Reason.OCV_NO_READ: _CRIT,  # an unread printed field is unverified, as an unread code
    Reason.PRINT_QUALITY: _MAJOR,
    Reason.ANOMALY: _CRIT,
}

#: What the code reader checks on every product that carries a code.
CODE_CHECKS: tuple[Reason, ...] = (
    Reason.NO_READ,
    Reason.NOT_GS1,
    Reason.BAD_CHECK_DIGIT,
    Reason.MISSING_AI,
    Reason.GTIN_MISMATCH,
    Reason.LOT_MISMATCH,
    Reason.EXPIRY_MISMATCH,
    Reason.EXPIRED,
    Reason.SERIAL_INVALID,
    Reason.DUPLICATE_SERIAL,
    Reason.LOW_GRADE,
)

#: Codes every product's recipe rules on: nothing to inspect, or an unusable frame.
ALWAYS: tuple[Reason, ...] = (Reason.NO_PRODUCT, Reason.IMAGE_ERROR)


@dataclass(frozen=True)
class Product:
    """One product (a simulator scenario, a shipped recipe): the defects it can show."""

    #: product defects, each reported as its name in upper case; the detector is trained
    #: on them, so their order (products in turn) is the models' class order
    defects: tuple[str, ...]
    #: further codes its classic tools report that are no detector class
    checks: tuple[Reason, ...] = ()
    #: the simulator prints code and print defects on it (else its code is always good)
    code_defects: bool = True
    #: a defect class whose reasons differ on this product from `CODE_REASONS`
    reasons: dict[str, tuple[Reason, ...]] = field(default_factory=dict)
    #: the standard challenge set's known-bad units (`edge.recipes.challenge`)
    challenge: tuple[str, ...] = ()
    #: novel defects the simulator can draw on it (`NOVEL_REASONS`): never detector classes
    novel: tuple[str, ...] = ()


#: The products, in the order their defects enter the detector's classes (append only).
PRODUCTS: dict[str, Product] = {
    "vials": Product(
        defects=("crack", "missing_cap", "cap_tilt", "low_fill", "particle", "scratch"),
        checks=(Reason.HIGH_FILL, Reason.MISSING_LABEL),
        challenge=("low_fill", "missing_cap", "cap_tilt", "wrong_lot"),
        novel=("fibre", "dented_cap", "ink_stain"),
    ),
    "blisters": Product(
        defects=("empty_pocket", "broken_tablet", "foreign_tablet"),
        code_defects=False,
        challenge=("empty_pocket", "broken_tablet", "foreign_tablet"),
    ),
    "cartons": Product(
        defects=(),
        checks=(Reason.MISSING_LABEL,),
        # the code is printed on the carton itself: no label, no code to read
        reasons={"missing_label": (Reason.NO_READ,)},
        challenge=("wrong_lot", "wrong_gtin", "expired"),
        novel=("ink_stain", "foreign_mark"),
    ),
}

#: The tools that can find each defect class (a recipe without one of them is not challenged
#: on that class by the standard set; the detector finds every detector class).
CHALLENGE_TOOLS: dict[str, tuple[str, ...]] = {
    "low_fill": ("fill_level",),
    "missing_cap": ("cap",),
    "cap_tilt": ("cap",),
    "crack": ("glass", "defects"),
    "particle": ("glass", "defects"),
    "empty_pocket": ("pockets",),
    "broken_tablet": ("pockets", "defects"),
    "foreign_tablet": ("pockets", "defects"),
    "wrong_lot": ("barcode",),
    "wrong_gtin": ("barcode",),
    "expired": ("barcode",),
}

#: The class the detector gives the code's location (no defect: it guides the reader).
CODE_CLASS = "code"

#: The detector's classes in the fixed order every model shares (one model serves every
#: product). A model card keeps its own list: it is that model's truth.
DETECTOR_CLASSES: list[str] = [c for p in PRODUCTS.values() for c in p.defects] + [CODE_CLASS]

#: Code defects the simulator prints (on products with `code_defects`), and their reasons.
CODE_REASONS: dict[str, tuple[Reason, ...]] = {
    "damaged_code": (Reason.NO_READ,),
    "wrong_gtin": (Reason.GTIN_MISMATCH,),
    "bad_check_digit": (Reason.BAD_CHECK_DIGIT,),
    "wrong_lot": (Reason.LOT_MISMATCH,),
    "expired": (Reason.EXPIRED, Reason.EXPIRY_MISMATCH),
    "wrong_expiry": (Reason.EXPIRY_MISMATCH,),
    "duplicate_serial": (Reason.DUPLICATE_SERIAL,),
    "missing_label": (Reason.MISSING_LABEL,),
}
CODE_DEFECTS: list[str] = list(CODE_REASONS)

#: Print defects of the human-readable lines beside the code (the code itself is right).
PRINT_REASONS: dict[str, tuple[Reason, ...]] = {
    "missing_char": (Reason.OCV_MISMATCH,),
    "broken_char": (Reason.OCV_MISMATCH,),
    "smear": (Reason.OCV_MISMATCH,),
    "wrong_lot_print": (Reason.OCV_MISMATCH,),
    "wrong_expiry_print": (Reason.OCV_MISMATCH,),
    "low_contrast": (Reason.PRINT_QUALITY,),
    "shifted_print": (Reason.PRINT_QUALITY,),
}
PRINT_DEFECTS: list[str] = list(PRINT_REASONS)

#: Novel defects: kinds the simulator draws (`edge.sim.novel`) that no model was trained
#: on, so that the good-only anomaly tool and the whole line can be measured on defects
#: nobody labelled. Each is an ANOMALY; they are never detector classes.
NOVEL_REASONS: dict[str, tuple[Reason, ...]] = {
    "fibre": (Reason.ANOMALY,),  # a thin fibre floating in a vial's liquid
    "dented_cap": (Reason.ANOMALY,),  # a vial's flip-off cap pushed in at its rim
    "ink_stain": (Reason.ANOMALY,),  # a blot of ink on a label or a carton's face
    "foreign_mark": (Reason.ANOMALY,),  # a stray printed mark or stamp that belongs elsewhere
}
NOVEL_DEFECTS: list[str] = list(NOVEL_REASONS)

#: Every defect class any product can show.
ALL_DEFECTS: list[str] = DETECTOR_CLASSES[:-1] + CODE_DEFECTS + PRINT_DEFECTS + NOVEL_DEFECTS

#: defects at one place on the item's surface: of several cameras around it, one sees each
#: (the others: fill, cap, a missing label show all round; the code faces the front camera)
LOCAL_DEFECTS: frozenset[str] = frozenset(
    {"crack", "scratch", "particle", "broken_tablet", "foreign_tablet"}
)

_RANK = {_MINOR: 0, _MAJOR: 1, _CRIT: 2}


def product(name: str) -> Product:
    """The product called `name`, or a clear error naming the known ones."""
    try:
        return PRODUCTS[name]
    except KeyError:
        raise ValueError(f"unknown product {name!r} (known: {sorted(PRODUCTS)})") from None


def reasons(defect: str, scenario: str) -> list[str]:
    """Reason codes the inspection should give for `defect` on product `scenario`."""
    p = product(scenario)
    if defect in p.reasons:
        codes = p.reasons[defect]
    elif defect in CODE_REASONS:
        codes = CODE_REASONS[defect]
    elif defect in PRINT_REASONS:
        codes = PRINT_REASONS[defect]
    elif defect in NOVEL_REASONS:
        codes = NOVEL_REASONS[defect]
    elif defect in DETECTOR_CLASSES[:-1]:
        codes = (Reason(defect.upper()),)
    else:
        raise ValueError(f"unknown defect class {defect!r}")
    return [r.value for r in codes]


def severity(defect: str, scenario: str) -> str:
    """How bad `defect` is on product `scenario`: the worst of its reason codes."""
    worst = max((SEVERITY[Reason(r)] for r in reasons(defect, scenario)), key=_RANK.__getitem__)
    return worst.value


def detector_severities() -> dict[str, str]:
    """Severity of each detector class (all but the code's location), as a model card keeps it."""
    sev: dict[str, str] = {}
    for name, p in PRODUCTS.items():
        sev.update({c: severity(c, name) for c in p.defects})
    return {c: sev[c] for c in DETECTOR_CLASSES if c in sev}


def class_table(scenario: str) -> dict[str, dict[str, str]]:
    """A product's recipe class table: each code it can report with its severity (reject).

    The product's defects and checks, LIGHTING where a detector inspects it (a frame too
    dark to vouch for), the codes every product has, the code reader's checks, ANOMALY
    (the good-only tool's finding, reported only where a recipe adds that tool) and, on a
    product with a printed code, the printed-text check's codes.
    """
    p = product(scenario)
    codes = [Reason(c.upper()) for c in p.defects] + list(p.checks)
    if p.defects:
        codes.append(Reason.LIGHTING)
    codes += [*ALWAYS, *CODE_CHECKS]
    codes.append(Reason.ANOMALY)  # ruled once a recipe adds the good-only `anomaly` tool
    if p.code_defects:  # a product printing its code prints the text beside it (`ocv`)
        codes += [Reason.OCV_MISMATCH, Reason.OCV_NO_READ, Reason.PRINT_QUALITY]
    return {c.value: {"severity": SEVERITY[c].value, "action": "reject"} for c in codes}


def recipe_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """A shipped recipe (its YAML as data) with the taxonomy's defaults where it is silent.

    Its class table starts from `class_table` (entries the recipe states win), and a
    detector tool (`type: defects`) without `classes` reports its product's defects.
    """
    scenario = data.get("scenario")
    if scenario is None:
        return data
    out = dict(data)
    out["classes"] = {**class_table(scenario), **(data.get("classes") or {})}
    tools = []
    for t in data.get("tools") or []:
        if isinstance(t, dict) and t.get("type") == "defects" and "classes" not in t:
            t = {**t, "classes": list(product(scenario).defects)}
        tools.append(t)
    out["tools"] = tools
    return out
