"""The OPC UA adapter against a real asyncua server carrying the same signals as nodes."""

from __future__ import annotations

import contextlib

import pytest

from edge.config import OpcUaPLC
from edge.line.plc.base import VERDICT_REJECT, PLCError, Result

from services import free_port

asyncua = pytest.importorskip("asyncua")


@contextlib.contextmanager
def edge_nodes_server():
    """A real asyncua server with the adapter's nodes, on a free port: (port, nodes)."""
    from asyncua import ua
    from asyncua.sync import Server

    from edge.line.plc.opcua import NODES

    port = free_port()
    server = Server()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/edge")
    ns = server.register_namespace("urn:edge-inspect")
    folder = server.nodes.objects.add_folder(ns, "Edge")
    nodes = {}
    for key, (nid, vtype) in NODES.items():
        vt = getattr(ua.VariantType, vtype)
        init = False if vtype == "Boolean" else 0
        node = folder.add_variable(ua.NodeId(nid, ns), key, ua.Variant(init, vt))
        node.set_writable()
        nodes[key] = node
    server.start()
    try:
        yield port, nodes
    finally:
        server.stop()


@pytest.fixture
def opcua_server():
    with edge_nodes_server() as served:
        yield served


def test_opcua_writes_the_result_and_strobe_and_reads_the_gate_back(opcua_server):
    from edge.line.plc.opcua import OpcUaAdapter

    port, nodes = opcua_server
    a = OpcUaAdapter(OpcUaPLC(url=f"opc.tcp://127.0.0.1:{port}/edge"))
    a.connect()
    try:
        a.write_result(Result(seq=42, encoder=70000, verdict=VERDICT_REJECT, reason=9))
        assert nodes["seq"].read_value() == 42 and nodes["encoder"].read_value() == 70000
        assert nodes["reason"].read_value() == 9 and nodes["reject"].read_value() is True
        nodes["bin_full"].write_value(True)
        nodes["confirmed_seq"].write_value(asyncua.ua.Variant(41, asyncua.ua.VariantType.UInt32))
        got = a.read_inputs()
        assert got.bin_full and got.confirmed_seq == 41
        a.set_line_stop(True)
        assert nodes["line_stop"].read_value() is True
    finally:
        a.close()


def test_opcua_server_gone_is_a_plc_error():
    from edge.line.plc.opcua import OpcUaAdapter

    a = OpcUaAdapter(OpcUaPLC(url=f"opc.tcp://127.0.0.1:{free_port()}/edge", timeout_s=0.5))
    with pytest.raises(PLCError, match="cannot connect"):
        a.connect()
