"""Serial registry: a serial is released once per GTIN, across threads and restarts."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import zxingcpp

from edge.domain import BatchState
from edge.inspect.barcode import BarcodeTool
from edge.inspect.base import Services, ToolContext
from edge.store.serials import SerialRegistry

GTIN = "09504000059101"


def test_a_new_serial_is_claimed_and_a_second_claim_names_the_first_item(tmp_path: Path):
    with SerialRegistry(tmp_path / "serials.db") as reg:
        assert reg.claim(GTIN, "S1", "B1", "item-1") is None
        assert reg.claim(GTIN, "S1", "B1", "item-2") == "item-1"
        assert reg.holder(GTIN, "S1") == "item-1"
        (dup,) = reg.duplicates()
        assert (dup["item_id"], dup["first_item_id"]) == ("item-2", "item-1")


def test_the_same_serial_under_another_gtin_is_not_a_duplicate(tmp_path: Path):
    with SerialRegistry(tmp_path / "serials.db") as reg:
        assert reg.claim(GTIN, "S1", "B1", "a") is None
        assert reg.claim("09504000059118", "S1", "B1", "b") is None
        assert reg.count() == 2 and reg.count("B1") == 2


def test_a_claim_survives_closing_and_reopening_the_file(tmp_path: Path):
    path = tmp_path / "state" / "serials.db"
    reg = SerialRegistry(path)
    assert reg.claim(GTIN, "S1", "B1", "before-restart") is None
    reg.close()
    with SerialRegistry(path) as again:
        assert again.claim(GTIN, "S1", "B1", "after-restart") == "before-restart"


def test_the_registry_file_is_wal_with_gtin_and_serial_as_primary_key(tmp_path: Path):
    path = tmp_path / "serials.db"
    SerialRegistry(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    pk = [r[1] for r in db.execute("PRAGMA table_info(serials)") if r[5]]
    assert pk == ["gtin", "serial"]
    db.close()


def test_concurrent_claims_give_each_serial_to_exactly_one_item(tmp_path: Path):
    reg = SerialRegistry(tmp_path / "serials.db", synchronous="NORMAL")
    wins: list[tuple[str, str]] = []
    lock = threading.Lock()

    def worker(w: int) -> None:
        for i in range(200):
            if reg.claim(GTIN, f"S{i}", "B1", f"w{w}-{i}") is None:
                with lock:
                    wins.append((f"S{i}", f"w{w}"))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 200 and len({s for s, _ in wins}) == 200
    assert reg.count() == 200 and len(reg.duplicates(limit=1000)) == 600
    reg.close()


def test_a_duplicate_pack_after_an_appliance_restart_is_rejected(tmp_path: Path):
    """Inspect a pack, stop (close the registry), start again, inspect its twin."""
    img = np.full((300, 400), 235, np.uint8)
    sym = zxingcpp.create_barcode(
        "(01)09504000059101(17)281231(10)L1(21)DUP1", zxingcpp.BarcodeFormat.DataMatrix, gs1=True
    )
    sym = np.asarray(sym.to_image(scale=4))
    img[60 : 60 + sym.shape[0], 90 : 90 + sym.shape[1]] = sym
    batch = BatchState(lot="L1", gtin=GTIN, expiry="281231", id="B1")
    now = time.mktime((2026, 11, 27, 12, 0, 0, 0, 0, -1))
    path = tmp_path / "serials.db"

    def run(item: str) -> list[tuple[str, str]]:
        reg = SerialRegistry(path)
        tool = BarcodeTool("barcode", BarcodeTool.Params(), Services(serials=reg))
        ctx = ToolContext(item, 1, time.monotonic() + 1, batch=batch, now=now)
        res = tool.inspect(img, ctx)
        reg.close()
        return [(f.code, f.message) for f in res.findings]

    assert run("pack-1") == []
    ((code, message),) = run("pack-2")
    assert code == "DUPLICATE_SERIAL" and "pack-1" in message
