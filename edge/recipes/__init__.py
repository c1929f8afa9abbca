"""Recipes and products as controlled documents, and the challenge test at batch start.

`documents` is the life cycle every controlled document shares (draft, approval with a QA
e-signature, retire, roll back, the audit trail's readable diff); `book` the recipe
versions the line runs (the shipped YAML recipes are the seed versions); `products` the
product master (GTIN, recipe, camera settings, expected printed fields, challenge set);
`challenge` the known-bad and known-good units a batch must see judged right before it starts;
`batch_start` the checks of a changeover (lot and expiry as GS1 AI (10) and (17)).

Nothing is imported here, so a submodule loads only what it needs.
"""
