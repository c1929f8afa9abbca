from __future__ import annotations

import logging

import pytest

from edge.inspect import registry
from edge.ops.logs import RedactFilter

from fake_tools import BehaviourParams


@pytest.fixture(autouse=True)
def _test_tools(monkeypatch):
    """Make the test tool type available to recipes in every test."""
    monkeypatch.setitem(registry.TOOLS, "behaviour", BehaviourParams)


@pytest.fixture(autouse=True)
def _appliance_logging_undone():
    """A test that runs the CLI in-process installs the appliance's log handler on the root
    logger, bound to that test's captured stderr; later tests' threads would log into the
    closed stream ("Logging error ... I/O operation on closed file"). Taken off after each."""
    root = logging.getLogger()
    level = root.level
    yield
    for h in list(root.handlers):
        if any(isinstance(f, RedactFilter) for f in h.filters):
            root.removeHandler(h)
    root.setLevel(level)
