"""The PLC link, against the simulated PLC (a real pymodbus TCP server with a conveyor)."""

from __future__ import annotations

import time

import pytest

from edge.config import SimPLC
from edge.line.plc.base import VERDICT_ACCEPT, VERDICT_REJECT, PLCError, Result, ResultRefused
from edge.line.plc.modbus import CO_ACCEPT, HR_RESULT, ModbusAdapter

from services import sim_plc  # noqa: F401


@pytest.fixture
def adapter(sim_plc):  # noqa: F811
    a = ModbusAdapter(SimPLC(port=sim_plc.port, timeout_s=0.5))
    a.connect()
    yield a
    a.close()


def wait_gate(plc, timeout=5.0):
    assert plc.conveyor.wait_idle(timeout)


def test_result_registers_are_written_before_the_strobe(sim_plc, adapter):  # noqa: F811
    sim_plc.conveyor.photo_eye(8000, time.monotonic())
    sim_plc.writes.clear()
    adapter.write_result(Result(seq=7, encoder=8000, verdict=VERDICT_ACCEPT, reason=0))
    assert list(sim_plc.writes) == [(16, HR_RESULT), (5, CO_ACCEPT)]
    assert adapter.read_inputs().received == 1


def test_the_gate_rejects_a_product_whose_verdict_never_came(sim_plc):  # noqa: F811
    sim_plc.conveyor.photo_eye(800, time.monotonic())
    wait_gate(sim_plc)
    assert sim_plc.conveyor.outcome(800) == "rejected"
    assert sim_plc.conveyor.counts.rejected_without_result == 1


def test_an_accept_in_time_lets_the_product_through(sim_plc, adapter):  # noqa: F811
    sim_plc.conveyor.photo_eye(1600, time.monotonic())
    adapter.write_result(Result(1, 1600, VERDICT_ACCEPT, 0))
    wait_gate(sim_plc)
    assert sim_plc.conveyor.outcome(1600) == "accepted"


def test_an_accept_after_the_product_passed_the_gate_does_not_let_it_through(sim_plc, adapter):  # noqa: F811
    # triggered long ago: at 800 mm/s the product reached the gate 600 mm later, 0.75 s after
    sim_plc.conveyor.photo_eye(2400, time.monotonic() - 5.0)
    wait_gate(sim_plc)
    with pytest.raises(ResultRefused, match="past the gate"):
        adapter.write_result(Result(2, 2400, VERDICT_ACCEPT, 0))
    assert sim_plc.conveyor.outcome(2400) == "rejected"
    assert sim_plc.conveyor.counts.late_results == 1
    adapter.heartbeat(1)  # a refused result is not a lost link


def test_a_reject_strobe_never_accepts_whatever_the_registers_say(sim_plc, adapter):  # noqa: F811
    sim_plc.conveyor.photo_eye(3200, time.monotonic())
    adapter.write_result(Result(3, 3200, VERDICT_REJECT, 5))
    wait_gate(sim_plc)
    assert sim_plc.conveyor.outcome(3200) == "rejected"
    assert adapter.read_inputs().confirmed_seq == 3


def test_bin_full_and_air_low_are_read_back(sim_plc, adapter):  # noqa: F811
    assert not adapter.read_inputs().bin_full
    sim_plc.conveyor.bin_full = True
    sim_plc.conveyor.air_low = True
    got = adapter.read_inputs()
    assert got.bin_full and got.air_low


def test_a_modbus_exception_is_a_plc_error_not_a_crash(sim_plc, adapter):  # noqa: F811
    with pytest.raises(PLCError, match="PLC answered"):
        adapter._call("read", adapter.client.read_holding_registers, 100, count=4)
    adapter.heartbeat(1)  # the link is still usable


def test_a_plc_that_stops_answering_is_a_plc_error(sim_plc, adapter):  # noqa: F811
    sim_plc.kill()
    with pytest.raises(PLCError):
        adapter.heartbeat(2)
        adapter.heartbeat(3)
    sim_plc.start()
    adapter.connect()
    adapter.heartbeat(4)


def test_an_unknown_plc_type_is_a_clear_error():
    from edge.line.plc.base import open_adapter
    from edge.plugins import PluginError

    class Cfg:
        type = "profinet"

    with pytest.raises(PluginError, match="unknown plc type 'profinet'"):
        open_adapter(Cfg())
