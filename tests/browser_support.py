"""Shared set-up for the Chromium tests: the appliance as it ships, a browser, a login.

The appliance runs the embedded demo config (the simulated vial line) with its web UI in its
own process (`web.isolated`, the default), on a free port of 127.0.0.1, with the shipped
model registry copied into the state directory (the technician's flows may add candidates).
A module that imports this one is skipped where Chromium or Playwright is missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import web_support as ws

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("EDGE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: screenshots and PDFs for a person to look at
OUT = ROOT / "test-output"

if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).is_file():
    pytest.skip(
        f"Chromium not installed at {CHROMIUM} (scripts/test.sh installs it)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api")


@contextmanager
def live_line(
    tmp: Path, setup: Callable[[Any], None] | None = None, **overrides: Any
) -> Iterator[tuple[Any, str]]:
    """The whole appliance on the embedded demo config, the users of `web_support` added,
    `setup(appliance)` run before it starts; yields it and the web UI's URL."""
    from edge.app import Appliance
    from edge.cli import _override
    from edge.config import load_config

    shutil.copytree(ROOT / "models", tmp / "models")
    cfg = _override(
        load_config(None),
        **{
            "records.state_dir": str(tmp),
            "records.sample_pass_every": 5,
            "source.rate_per_min": 300,
            "web.port": 0,
            "web.host": "127.0.0.1",
            "inference.models_dir": str(tmp / "models"),
            **overrides,
        },
    )
    appl = Appliance(cfg)
    ws.add_users(appl)
    if setup is not None:
        setup(appl)
    appl.start()
    try:
        web = next(c for c in appl.components if c.name == "web")
        assert web.status()["up"], web.status()
        yield appl, web.url
    finally:
        appl.stop()


@contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium, the system's (no browser download)."""
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def login(page: Any, url: str, user: str) -> None:
    """Log in through the login page as one of `web_support`'s users."""
    page.goto(url + "/login")
    page.fill("#username", user)
    page.fill("#password", ws.PASSWORDS[user][2])
    page.click("#login")


def sign(page: Any, user: str, reason: str) -> None:
    """Fill and submit the e-signature dialog (`_esign.html`) with `user`'s password."""
    page.fill("#sign-password", ws.PASSWORDS[user][2])
    page.fill("#sign-reason", reason)
    page.click("#do-sign")


def open_upload(page: Any) -> None:
    """Open the image browser's "Add photos" box (it is open already while the line has kept
    no image, and a click on its summary would close it)."""
    box = page.locator("#upload-box")
    if box.get_attribute("open") is None:
        box.locator("summary").click()
