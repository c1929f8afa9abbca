"""Every plugin keeps its kind's contract, found from the registries: a new tool, source,
inference backend or PLC adapter is tested here the day it is registered, without a new
test file. One whose library or device is not on this machine is skipped, saying which.

- A config file is checked without the libraries of the plugins it names: validating never
  imports an implementation (OpenCV, ONNX Runtime, zxing-cpp, torch); building one
  whose library is missing is a clear error naming it.
- A tool is built from its parameter model's smallest entry (`Params.example`), judges
  any frame (blank, odd-sized, one channel, not 8-bit) without letting an exception out,
  names itself in its result, reports only measurements it declares, findings only with
  known reason codes, and rejects a frame it cannot read.
- A source yields Frames and stops when told; a backend loads a tiny model and infers;
  a PLC adapter writes a result, a heartbeat and a line stop and reads the gate back.
"""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fake_gige import fake_gige_fixture  # noqa: F401 (fixture)

from edge import plugins
from edge.capture.base import SOURCES, Source, open_source
from edge.config import SourceConfig
from edge.domain import Frame, Reason, ToolResult
from edge.inference.base import BACKENDS, Backend, BackendError, create_backend
from edge.inference.config import BackendConfig, OnnxBackend
from edge.inspect.base import Services, ToolContext
from edge.inspect.registry import TOOLS, params_class, tool_class
from edge.line.plc.base import (
    ADAPTERS,
    VERDICT_REJECT,
    PLCAdapter,
    PLCError,
    PLCInputs,
    Result,
    open_adapter,
)
from edge.line.plc.config import PLCConfig

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("cv2", "onnxruntime", "zxingcpp", "torch")
KNOWN_CODES = {r.value for r in Reason}


def config_class(union, key: str) -> type:
    return next(c for c in plugins.members(union) if plugins.type_key(c) == key)


# --------------------------------------------------------------------------- configs are light

CHECK = """
import importlib.abc, json, sys
BLOCKED = {blocked!r}

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not installed (blocked by the test)")
        return None

sys.meta_path.insert(0, Blocked())
from edge.config import ConfigError, load_config, parse_config

out = {{"files": {{}}}}
for path in {paths!r}:
    try:
        load_config(path)
        out["files"][str(path)] = "valid"
    except ConfigError as exc:
        out["files"][str(path)] = exc.errors
try:
    parse_config({{"recipes": {{"r": {{"name": "r", "tools": [
        {{"type": "fill_level", "min_level_mm": "low"}}, {{"type": "nope"}},
        {{"type": "barcode", "rungs": ["magic"]}}]}}}}}})
except ConfigError as exc:
    out["bad"] = exc.errors
out["imported"] = sorted(sys.modules)

from edge.capture.base import open_source
from edge.config import OpenCVSource, default_recipes
from edge.inspect.base import Services
from edge.inspect.registry import build_tools
built = {{}}
for what, build in [
    ("tools", lambda: build_tools(default_recipes()["vials"], Services())),
    ("source", lambda: open_source(OpenCVSource())),
]:
    try:
        build()
        built[what] = "built"
    except Exception as exc:
        built[what] = str(exc)
out["built"] = built
print(json.dumps(out))
"""


def _check(blocked: tuple[str, ...]) -> dict:
    paths = [None, *(str(p) for p in sorted((ROOT / "examples").glob("*.yaml")))]
    code = CHECK.format(blocked=blocked, paths=paths)
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_a_config_file_is_checked_without_the_libraries_of_the_plugins_it_names():
    """Without OpenCV, ONNX Runtime, zxing-cpp or torch, the shipped demo config and
    every example validate exactly as they do with them, and bad tool keys are still found;
    no plugin's implementation is imported to check a file. Building one then says which
    library it lacks."""
    bare, full = _check(HEAVY), _check(())
    assert bare["files"] == full["files"]
    assert bare["files"]["None"] == "valid"  # the embedded demo config
    assert len(bare["files"]) > 3 and set(bare["files"].values()) == {"valid"}, bare["files"]
    assert bare["bad"] == full["bad"]
    assert any("tools.0 (fill_level): min_level_mm" in e for e in bare["bad"]), bare["bad"]
    assert any("tools.1 (nope): unknown tool type 'nope'" in e for e in bare["bad"])
    assert any("tools.2 (barcode): rungs: " in e and "magic" in e for e in bare["bad"])

    implementations = {p.impl.partition(":")[0] for p in TOOLS.values()}
    for table in (SOURCES, BACKENDS, ADAPTERS):
        implementations |= {t.partition(":")[0] for t in table.values()}
    imported = set(bare["imported"])
    assert not imported & implementations, sorted(imported & implementations)
    assert not {m for m in imported if m.partition(".")[0] in HEAVY}

    assert "fill_level" in bare["built"]["tools"] and "cv2" in bare["built"]["tools"]
    assert "not available here" in bare["built"]["tools"]
    assert "source 'opencv' is not available here" in bare["built"]["source"]
    assert full["built"]["source"] == "built"


@pytest.mark.parametrize(
    "kind, union, base",
    [
        ("source", SourceConfig, Source),
        ("backend", BackendConfig, Backend),
        ("plc", PLCConfig, PLCAdapter),
    ],
)
def test_every_config_class_names_an_implementation_of_its_kind(kind, union, base):
    """What the line opens for a `type` is what that type's config class names (`impl`), and
    it is a plugin of the right kind; only `plc: {type: none}` opens nothing."""
    table = {"source": SOURCES, "backend": BACKENDS, "plc": ADAPTERS}[kind]
    for config_cls in plugins.members(union):
        key = plugins.type_key(config_cls)
        if config_cls.impl is None:
            assert (kind, key) == ("plc", "none") and key not in table
            continue
        assert table[key] == config_cls.impl
        try:
            cls = plugins.load(kind, table, key)
        except plugins.PluginError as exc:  # its library is not installed here
            assert "not available here" in str(exc)
            continue
        assert issubclass(cls, base), (key, cls)
    with pytest.raises(plugins.PluginError, match=f"unknown {kind} type 'profinet'"):
        plugins.load(kind, table, "profinet")


# --------------------------------------------------------------------------- tools


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """A models folder holding the shipped models, for tools that name one."""
    d = tmp_path_factory.mktemp("contract") / "models"
    d.mkdir()
    for shipped in (ROOT / "models").iterdir():
        if shipped.is_dir():
            (d / shipped.name).symlink_to(shipped)
    return d


@pytest.fixture(scope="module")
def vial_anomaly(models) -> None:
    """A small anomaly model fitted on simulated good vials, verified and approved (as
    test_anomaly makes it; skipped where its feature extractor's libraries are missing)."""
    ta = pytest.importorskip("test_anomaly")
    root = models.parent
    imgs = ta.good_vials(16)
    good, held = ta.write(root / "good", imgs[:12]), ta.write(root / "held", imgs[12:])
    ta.fit([good], "vial-anomaly", "1.0.0", models, opt=ta.OPT, by="tester")
    ta.approve({"models": models, "held": held})


#: models named by a tool's example that are not shipped: the fixture that makes one here
MODEL_MAKERS = {"vial-anomaly": "vial_anomaly"}


def frames_to_judge() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        "grey": np.full((48, 64, 3), 128, np.uint8),
        "blank": np.zeros((480, 640, 3), np.uint8),
        "odd-sized noise": rng.integers(0, 256, (23, 37, 3), dtype=np.uint8),
        "one pixel": np.zeros((1, 1, 3), np.uint8),
        "one channel": np.full((48, 64), 200, np.uint8),
        "not 8-bit": np.zeros((48, 64, 3), np.float32),
    }


@pytest.mark.parametrize("key", sorted(TOOLS))
def test_every_tool_judges_any_frame_through_the_tool_protocol(key, models, request):
    params_cls = params_class(key)
    try:
        cls = tool_class(key)
    except plugins.PluginError as exc:
        pytest.skip(str(exc))
    assert cls.type_key == key and cls.Params is params_cls, "registry and tool disagree"
    assert cls.version and all(isinstance(u, str) and u for u in cls.measures.values())
    params = params_cls.model_validate(params_cls.example)  # required keys need an example

    model = params_cls.example.get("model")
    if model and not (models / model).exists():
        assert model in MODEL_MAKERS, f"{key}: ship model {model!r} or say how to make one here"
        request.getfixturevalue(MODEL_MAKERS[model])
    name = f"{key} under test"
    tool = cls(name, params, Services(models_dir=models, backend=OnnxBackend(threads=1)))
    try:
        for what, image in frames_to_judge().items():
            ctx = ToolContext(item_id=what, seq=1, deadline=time.monotonic() + 10, now=time.time())
            r = tool.run(image, ctx)
            assert isinstance(r, ToolResult) and r.tool == name and r.version == cls.version
            assert set(r.measurements) <= set(cls.measures), (what, r.measurements)
            assert all(math.isfinite(v) for v in r.measurements.values()), (what, r)
            assert {f.code for f in r.findings} <= KNOWN_CODES, (what, r.findings)
            assert all(f.tool == name for f in r.findings)
            assert r.error is None or r.error.strip(), what
            if what in ("not 8-bit", "one pixel"):  # a frame it cannot judge rejects, saying why
                assert r.error or r.findings, (what, r)
    finally:
        tool.close()


# --------------------------------------------------------------------------- sources


def _png_folder(path: Path) -> dict:
    import cv2

    path.mkdir()
    for i in range(3):
        cv2.imwrite(str(path / f"p{i}.png"), np.full((48, 64, 3), 40 * i, np.uint8))
    return {"path": path, "loop": True}


def _video_file(path: Path) -> dict:
    import cv2

    w = cv2.VideoWriter(str(path / "line.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(4):
        w.write(np.full((48, 64, 3), 30 * i, np.uint8))
    w.release()
    return {"device": str(path / "line.avi")}


def _gstreamer(path: Path) -> dict:
    from edge.capture.opencv import gstreamer_available

    if not gstreamer_available():
        pytest.skip("this OpenCV build has no GStreamer")
    return {"pipeline": "videotestsrc num-buffers=20 ! videoconvert ! appsink"}


#: how to get a few frames from each source type on this machine (a new source: one line)
SOURCE_SETUPS = {
    "simulator": lambda tmp, request: {"realtime": False, "width": 320, "height": 240},
    "folder": lambda tmp, request: _png_folder(tmp / "frames"),
    "opencv": lambda tmp, request: _video_file(tmp),
    "gstreamer": lambda tmp, request: _gstreamer(tmp),
    "genicam": lambda tmp, request: {
        "serial": request.getfixturevalue("fake_gige").serial,
        "rate_per_min": 600,
        "frame_timeout_ms": 400,
    },
}


@pytest.mark.parametrize("key", sorted(SOURCES))
def test_every_source_yields_frames_and_stops_when_told(key, tmp_path, request):
    assert key in SOURCE_SETUPS, f"say in SOURCE_SETUPS how to open a {key!r} source here"
    cfg = config_class(SourceConfig, key).model_validate(SOURCE_SETUPS[key](tmp_path, request))
    try:
        src = open_source(cfg)
    except plugins.PluginError as exc:
        pytest.skip(str(exc))
    assert isinstance(src, Source) and src.describe()["type"] == key
    got: list[Frame] = []
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            for f in src.frames():
                got.append(f)
                if len(got) == 3:
                    src.stop()
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    t.join(30)
    if t.is_alive():
        src.stop()
        t.join(5)
    assert not errors, errors
    assert not t.is_alive(), f"{key}: frames() did not end after stop()"
    assert len(got) >= 3 and all(isinstance(f, Frame) for f in got)
    for f in got:
        assert f.error is None, f.error
        assert f.image.dtype == np.uint8 and f.image.ndim == 3 and f.image.shape[2] == 3
    assert [f.t_trigger for f in got] == sorted(f.t_trigger for f in got)


# --------------------------------------------------------------------------- backends


@pytest.mark.parametrize("key", sorted(BACKENDS))
def test_every_backend_loads_a_tiny_model_and_infers(key, tmp_path):
    from tiny_models import CLASSES, SIZE, fp32_detector

    cfg = config_class(BackendConfig, key).model_validate(
        {"int8": False} if key == "tensorrt" else {"threads": 1}
    )
    model = fp32_detector(tmp_path / "tiny.onnx")
    try:
        be = create_backend(cfg).load(model, SIZE, CLASSES)
    except BackendError as exc:
        if "not available here" in str(exc):
            pytest.skip(str(exc))
        raise
    try:
        assert be.readiness()[0] and be.describe()["type"] == key
        for image in (np.full((48, 64, 3), 90, np.uint8), np.zeros((23, 37, 3), np.uint8)):
            dets = be.infer(image, conf=0.01)
            for d in dets:
                assert d["cls"] in CLASSES and 0 <= d["score"] <= 1 and len(d["bbox"]) == 4
    finally:
        be.close()


# --------------------------------------------------------------------------- PLC adapters


def _sim_plc(request) -> tuple[dict, object]:
    """The simulated PLC (a real Modbus TCP server), a product on the belt at encoder 2400."""
    from edge.config import EncoderConfig
    from edge.line.plc.sim import SimulatedPLC

    plc = SimulatedPLC(EncoderConfig(), belt_mm_s=800.0).start()
    request.addfinalizer(plc.close)
    plc.conveyor.photo_eye(2400, time.monotonic())
    return {"port": plc.port, "timeout_s": 0.5}, plc.close


def _opcua(request) -> tuple[dict, object]:
    pytest.importorskip("asyncua")
    from test_plc_opcua import edge_nodes_server

    stack = contextlib.ExitStack()
    request.addfinalizer(stack.close)
    port, _nodes = stack.enter_context(edge_nodes_server())
    return {"url": f"opc.tcp://127.0.0.1:{port}/edge", "timeout_s": 0.5}, stack.close


def _gpio(request) -> tuple[dict, object]:
    pytest.importorskip("gpiod", reason="the GPIO adapter needs gpiod and a GPIO chip")
    if not Path("/dev/gpiochip0").exists():
        pytest.skip("no GPIO chip on this machine")
    return {}, lambda: None


#: the peer each adapter talks to on this machine, and how to take it away (a new
#: adapter: one line)
PLC_PEERS = {"sim": _sim_plc, "modbus": _sim_plc, "opcua": _opcua, "gpio": _gpio}


@pytest.mark.parametrize("key", sorted(ADAPTERS))
def test_every_plc_adapter_writes_a_result_and_reads_the_gate_back(key, request):
    assert key in PLC_PEERS, f"say in PLC_PEERS what a {key!r} adapter talks to here"
    settings, take_away = PLC_PEERS[key](request)
    cfg = config_class(PLCConfig, key).model_validate(settings)
    try:
        adapter = open_adapter(cfg)
    except plugins.PluginError as exc:
        pytest.skip(str(exc))
    adapter.connect()
    try:
        adapter.heartbeat(1)
        adapter.write_result(Result(seq=3, encoder=2400, verdict=VERDICT_REJECT, reason=9))
        adapter.set_line_stop(True)
        adapter.set_line_stop(False)
        assert isinstance(adapter.read_inputs(), PLCInputs)
        assert isinstance(adapter.describe(), dict)
        if key != "gpio":  # a gate wired to GPIO has no peer to lose
            take_away()
            with pytest.raises(PLCError):  # a lost peer is an error, never a silent write
                adapter.heartbeat(2)
                adapter.write_result(Result(seq=4, encoder=3200, verdict=VERDICT_REJECT, reason=9))
    finally:
        adapter.close()
