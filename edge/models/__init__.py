"""Models under change control: cards (`cards`), the registry, approval and rollback, and the
one way to open a model for running (`registry.open_model`).

The line, the shadow job and the evaluations open models here; training creates candidates
here. Nothing in this package imports `edge.train`, so the line's rule "only an approved
model whose files match its card" does not live with training.
"""
