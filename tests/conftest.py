from __future__ import annotations

import pytest

from edge.inspect import registry

from fake_tools import BehaviourParams


@pytest.fixture(autouse=True)
def _test_tools(monkeypatch):
    """Make the test tool type available to recipes in every test."""
    monkeypatch.setitem(registry.TOOLS, "behaviour", BehaviourParams)
