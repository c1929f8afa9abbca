"""The product master: what the line needs to know of a product, as a controlled document.

A product is keyed by its GTIN and names its recipe, the camera settings it runs with, the
human-readable fields printed beside the code, and its challenge set: the known-bad units
(each with the reason it must be rejected for) and known-good units a batch must see judged
right before it starts (`edge.recipes.challenge`). A technician edits (a draft), QA approves
with an e-signature; approval is refused while the challenge set is empty, lacks a good or a
bad unit, or a bad unit names no reason, and while the recipe has no approved version.
YAML export and import move products between appliances.
"""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.config import Scenario
from edge.recipes.batch_start import Gtin
from edge.recipes.documents import Documents
from edge.store.db import Database


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CameraSettings(_Strict):
    exposure_us: float | None = Field(None, gt=0)
    gain: float | None = Field(None, ge=0)
    light_percent: float | None = Field(None, ge=0, le=100, description="lighting intensity")


class PrintedFields(_Strict):
    """The human-readable lines beside the code, as GS1 AIs, and how the expiry is printed."""

    fields: list[str] = Field(default_factory=lambda: ["01", "17", "10", "21"])
    date_format: str = "YYMMDD"


class ChallengeUnit(_Strict):
    """One kind of challenge unit: a simulated defect (None: a good unit), what it must get."""

    defect: str | None = None
    expect: Literal["PASS", "REJECT"]
    reason: str | None = Field(None, description="the reason code a REJECT must carry")
    count: int = Field(1, ge=1, le=20)


class Product(_Strict):
    gtin: Gtin
    name: str = Field(min_length=1, max_length=120)
    recipe: str = Field(min_length=1)
    scenario: Scenario | None = Field(None, description="the simulated product (challenge set)")
    camera: CameraSettings = Field(default_factory=CameraSettings)
    printed: PrintedFields = Field(default_factory=PrintedFields)
    challenge: list[ChallengeUnit] = Field(default_factory=list)


def challenge_problems(p: Product) -> list[str]:
    """Why this challenge set cannot prove the inspection (empty means it can)."""
    out = []
    if not p.challenge:
        out.append("the challenge set is empty")
        return out
    if not any(u.expect == "REJECT" for u in p.challenge):
        out.append("the challenge set has no known-bad unit")
    if not any(u.expect == "PASS" for u in p.challenge):
        out.append("the challenge set has no known-good unit")
    for i, u in enumerate(p.challenge):
        if u.expect == "REJECT" and not u.reason:
            out.append(f"challenge.{i} ({u.defect}): a known-bad unit needs its expected reason")
        if u.expect == "REJECT" and u.defect is None:
            out.append(f"challenge.{i}: a known-bad unit needs the defect it carries")
    return out


class ProductMaster:
    """Products in the database: drafts, QA approval, YAML in and out."""

    def __init__(self, db: Database, audit: Any = None, recipe_approved: Any = None):
        self.recipe_approved = recipe_approved  # callable(name) -> bool, None: not checked
        self.docs = Documents(db, audit, "product", check=self._check)

    def _check(self, content: dict[str, Any]) -> list[str]:
        try:
            p = Product.model_validate(content)
        except ValidationError as exc:
            return [str(exc)]
        out = challenge_problems(p)
        if self.recipe_approved is not None and not self.recipe_approved(p.recipe):
            out.append(f"recipe {p.recipe!r} has no approved version")
        return out

    def save_draft(self, product: Product, by: str, reason: str = "") -> int:
        return self.docs.add_draft(product.gtin, product.model_dump(mode="json"), by, reason)

    def approved(self, gtin: str) -> Product | None:
        doc = self.docs.approved(gtin.zfill(14))
        return Product.model_validate(doc["content"]) if doc else None

    def list(self) -> list[dict[str, Any]]:
        out = []
        for gtin in self.docs.names():
            vs = self.docs.versions(gtin)
            ok = next((v for v in vs if v["status"] == "approved"), None)
            last = vs[-1]
            out.append(
                {
                    "gtin": gtin,
                    "name": (ok or last)["content"]["name"],
                    "recipe": (ok or last)["content"]["recipe"],
                    "approved_version": ok["version"] if ok else None,
                    "latest_version": last["version"],
                    "latest_status": last["status"],
                }
            )
        return out

    def export_yaml(self, gtins: list[str] | None = None) -> str:
        """The approved (else latest) version of each product, as YAML `products:`."""
        out = []
        for gtin in gtins or self.docs.names():
            doc = self.docs.approved(gtin) or self.docs.latest(gtin)
            if doc is not None:
                out.append(doc["content"])
        return yaml.safe_dump({"products": out}, sort_keys=False)

    def import_yaml(self, text: str, by: str) -> list[tuple[str, int]]:
        """Each product of the YAML as a draft (QA approves on this appliance); every
        problem of every product is reported before anything is stored."""
        data = yaml.safe_load(text) or {}
        items = data.get("products") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise ValueError("(root): a product file is a mapping with a `products:` list")
        parsed, problems = [], []
        for i, raw in enumerate(items):
            try:
                parsed.append(Product.model_validate(raw))
            except ValidationError as exc:
                for e in exc.errors():
                    loc = ".".join(str(x) for x in e["loc"]) or "(root)"
                    problems.append(f"products.{i}.{loc}: {e['msg']}")
        if problems:
            raise ValueError("\n".join(problems))
        return [(p.gtin, self.save_draft(p, by, "imported")) for p in parsed]
