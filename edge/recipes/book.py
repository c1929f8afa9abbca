"""The recipe versions the line may run: only approved ones, each known by version and hash.

The recipes a config names (the shipped YAML under `edge/defaults/recipes/` and the
config's own) are the seed: a recipe name the database has never seen is stored as
version 1, approved as shipped. After that the database is the controlled copy: a config
whose recipe differs from the approved version is stored as a draft and the line refuses
keeps running the approved version until QA approves the draft (`edge recipe approve`), so
editing YAML on the box never changes what the line runs unnoticed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from edge.config import Recipe
from edge.recipes.documents import AuditUnwritten, DocumentError, Documents
from edge.store import recipes as store
from edge.store.db import Database

log = logging.getLogger(__name__)


class RecipeNotApproved(DocumentError):
    """The line was asked to run a recipe (or a version of it) QA has not approved."""


@dataclass(frozen=True, slots=True)
class Stamp:
    """What every item records of its recipe: name, version, content hash."""

    name: str
    version: int
    sha256: str


def recipe_content(recipe: Recipe) -> dict[str, Any]:
    """A recipe's content as stored and hashed (the validated model, defaults filled in)."""
    return recipe.model_dump(mode="json")


class RecipeBook:
    """Recipe versions: seed, resolve the approved one, and the life cycle of `Documents`."""

    def __init__(self, db: Database, audit: Any = None):
        self.docs = Documents(db, audit, "recipe", check=_valid)
        self.db = db

    def seed(self, recipes: dict[str, Recipe]) -> list[str]:
        """Store each recipe of the config: a new name as its approved seed version, a changed
        one as a draft (logged); one already stored is left as it is. Returns the audit
        entries that could not be written (disk full): the caller raises the alarm, the line
        still starts, as with every other audit failure at start-up."""
        known = set(self.docs.names())
        problems: list[str] = []
        for name, recipe in recipes.items():
            content = recipe_content(recipe)
            try:
                if name not in known:
                    self.docs.seed(name, content)
                    continue
                sha = store.content_hash(content)
                approved = self.docs.approved(name)
                if approved is not None and approved["sha256"] == sha:
                    continue
                if store.by_hash(self.db, "recipe", name, sha) is None:
                    v = self.docs.add_draft(name, content, "system:config", "differs in the config")
                    log.warning(
                        "recipe %s in the config differs from the approved one: draft v%d", name, v
                    )
            except AuditUnwritten as exc:
                problems.append(f"recipe {name}: {exc}")
        return problems

    def stamp(self, recipe: Recipe) -> Stamp:
        """The approved version whose content this recipe is; RecipeNotApproved otherwise."""
        approved = self.docs.approved(recipe.name)
        sha = store.content_hash(recipe_content(recipe))
        if approved is None:
            raise RecipeNotApproved(
                f"recipe {recipe.name!r} has no approved version: the line runs only approved "
                "recipes (`edge recipe list`)"
            )
        if approved["sha256"] != sha:
            other = store.by_hash(self.db, "recipe", recipe.name, sha)
            where = f" (it is v{other['version']}, {other['status']})" if other else ""
            raise RecipeNotApproved(
                f"recipe {recipe.name!r} as configured is not the approved version "
                f"v{approved['version']}{where}: approve it (`edge recipe approve "
                f"{recipe.name} VERSION`) or run the approved one"
            )
        return Stamp(recipe.name, int(approved["version"]), sha)

    def resolve(self, recipe: Recipe) -> tuple[Recipe, Stamp]:
        """What the line runs for `recipe`: itself when it is the approved version, else the
        approved version of its name (logged: the config's copy is a draft)."""
        try:
            return recipe, self.stamp(recipe)
        except RecipeNotApproved:
            if self.docs.approved(recipe.name) is None:
                raise
        approved, stamp = self.approved(recipe.name)
        log.warning(
            "recipe %s: the config's copy is not approved; the line runs approved v%d",
            recipe.name,
            stamp.version,
        )
        return approved, stamp

    def approved(self, name: str) -> tuple[Recipe, Stamp]:
        """The approved version of `name` as a Recipe, with its stamp."""
        doc = self.docs.approved(name)
        if doc is None:
            raise RecipeNotApproved(f"recipe {name!r} has no approved version")
        return Recipe.model_validate(doc["content"]), Stamp(name, doc["version"], doc["sha256"])

    def version(self, name: str, version: int) -> Recipe:
        return Recipe.model_validate(self.docs.get(name, version)["content"])


def _valid(content: dict[str, Any]) -> list[str]:
    try:
        Recipe.model_validate(content)
    except ValueError as exc:
        return [str(exc)]
    return []
