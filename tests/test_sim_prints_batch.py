"""The simulated line prints the batch the line starts, as a real line's printer does.

A changeover at the touchscreen or by MES starts a batch with the product's GTIN and the
operator's lot and expiry. On a real line the printer is set up with the same batch; a
simulator that kept printing its own start-up batch made every item after a changeover a
LOT_MISMATCH / GTIN_MISMATCH reject. Serials of the new GTIN continue from that GTIN's
cursor, so a restart never prints one twice.
"""

from __future__ import annotations

from edge.capture.simulator import SimulatorCapture
from edge.config import SimulatorSource
from edge.domain import BatchState
from edge.sim import gs1data
from edge.sim.serialisation import SerialCursor


def _capture(tmp_path, seed: int = 3) -> SimulatorCapture:
    cfg = SimulatorSource(scenario="vials", seed=seed, items=12, realtime=False, defect_rate=0)
    cam = SimulatorCapture(cfg, BatchState(lot="L1", gtin=gs1data.default_gtin(seed)))
    cam.continue_serials(SerialCursor(tmp_path / "serials.json"))
    return cam


def test_after_a_batch_starts_the_items_carry_its_gtin_lot_and_expiry(tmp_path):
    cam = _capture(tmp_path)
    other = gs1data.other_gtin(cam.batch.gtin, 7)
    frames = cam.frames()
    before = [next(frames).truth["code"]["gs1"] for _ in range(4)]
    cam.print_batch(BatchState(lot="LNEW-26", gtin=other, expiry="291130", id="b2"))
    after = [f.truth["code"]["gs1"] for f in frames]
    assert {g["10"] for g in before} == {"L1"}
    assert {(g["01"], g["10"], g["17"]) for g in after} == {(other, "LNEW-26", "291130")}
    assert len(after) == 12 - 4


def test_serials_of_the_new_gtin_continue_from_its_cursor_across_a_restart(tmp_path):
    cam = _capture(tmp_path)
    other = gs1data.other_gtin(cam.batch.gtin, 7)
    frames = cam.frames()
    next(frames)
    cam.print_batch(BatchState(lot="L2", gtin=other, expiry="291130"))
    first = [f.truth["code"]["gs1"]["21"] for f in frames]
    # the appliance restarts and prints the same GTIN again: no serial is issued twice
    again = SimulatorCapture(
        SimulatorSource(scenario="vials", seed=3, items=12, realtime=False, defect_rate=0),
        BatchState(lot="L2", gtin=other, expiry="291130"),
    )
    again.continue_serials(SerialCursor(tmp_path / "serials.json"))
    second = [f.truth["code"]["gs1"]["21"] for f in again.frames()]
    assert len(set(first)) == len(first) and not set(first) & set(second)


def test_a_batch_without_a_gtin_keeps_the_printed_one(tmp_path):
    cam = _capture(tmp_path)
    gtin = cam.batch.gtin
    cam.print_batch(BatchState(lot="L3"))
    assert (cam.batch.gtin, cam.batch.lot) == (gtin, "L3")
