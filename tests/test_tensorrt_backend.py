"""The TensorRT backend's control flow on a test double of TensorRT and pycuda.

The double (tests/fake_tensorrt.py) follows the Python API of TensorRT 10.x and 11.x and
of pycuda closely enough to run every branch here: engine cache hits and misses, keys,
corrupt engines, build failures, the background build at start, concurrent calls and
teardown. It proves nothing about numerics or real kernels; the GPU test in
tests/test_tensorrt.py does that on a Jetson (docs/deployment.md).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import fake_tensorrt
import numpy as np
import pytest
from tiny_models import CLASSES, SIZE, calibration_arrays, fp32_detector

from edge.config import TensorRTBackend as TRTConfig
from edge.inference.base import BackendError
from edge.inference.tensorrt import EngineNotReady, TensorRTBackend


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> tuple[Path, Path]:
    """(FP32, INT8 Q/DQ) of a tiny detector, quantised by the project's own entry point."""
    from edge.train.quantize import quantize_qdq

    d = tmp_path_factory.mktemp("tiny")
    fp32 = fp32_detector(d / "model.onnx")
    quantize_qdq(fp32, d / "model.int8.onnx", calibration_arrays())
    return fp32, d / "model.int8.onnx"


@pytest.fixture
def fake(monkeypatch) -> fake_tensorrt.Knobs:
    return fake_tensorrt.install(monkeypatch)


@pytest.fixture
def models(tmp_path, model_files) -> Path:
    """A models folder with the INT8 file; the test checks nothing is written into it."""
    d = tmp_path / "opt" / "models"
    d.mkdir(parents=True)
    for f in model_files:
        (d / f.name).write_bytes(f.read_bytes())
    return d


def backend(cache: Path, wait: bool = True, model: Path | None = None, **cfg) -> TensorRTBackend:
    be = TensorRTBackend(TRTConfig(cache_dir=cache, **cfg))
    return be.load(model, SIZE, CLASSES, wait=wait)  # type: ignore[return-value]


def x(value: float = 0.25) -> np.ndarray:
    return np.full((1, 3, SIZE, SIZE), value, np.float32)


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# --------------------------------------------------------------------------- cache


def test_engine_is_built_once_into_the_state_dir_and_loaded_from_the_cache(fake, models, tmp_path):
    cache = tmp_path / "state" / "engines"
    before = files(models)
    be = backend(cache, model=models / "model.int8.onnx")
    assert be.ready and fake.builds == 1
    out = be.run(x(0.25))
    assert out.shape == (1, 4 + len(CLASSES), SIZE * SIZE) and np.allclose(out, 0.25)
    be.close()
    assert files(models) == before  # nothing beside the models (read-only /opt)
    engines = [f for f in files(cache) if f.endswith(".engine")]
    assert len(engines) == 1 and not [f for f in files(cache) if f.endswith(".tmp")]
    meta = json.loads((cache / engines[0].replace(".engine", ".json")).read_text())
    assert meta["gpu_sm_count"] == 16 and meta["gpu_compute_capability"] == [8, 7]
    assert meta["engine_sha256"] and meta["precision"] == "int8-fp16"

    again = backend(cache, model=models / "model.int8.onnx")
    assert again.ready and fake.builds == 1  # a hit: loaded, not built
    again.close()
    assert fake.errors == [] and fake.retained == 0


@pytest.mark.parametrize(
    "change",
    [
        {"sm_count": 8},
        {"total_memory": 8 * 2**30},
        {"compute_capability": (7, 2)},
        {"gpu_name": "Xavier"},
        {"version": "10.7.0"},
    ],
)
def test_another_gpu_or_runtime_gets_its_own_engine(monkeypatch, models, tmp_path, change):
    cache = tmp_path / "engines"
    first = fake_tensorrt.install(monkeypatch)
    backend(cache, model=models / "model.int8.onnx").close()
    assert first.builds == 1
    other = fake_tensorrt.install(monkeypatch, fake_tensorrt.Knobs(**change))
    be = backend(cache, model=models / "model.int8.onnx")
    assert be.ready and other.builds == 1  # a new key: built, never the other GPU's engine
    be.close()
    assert len([f for f in files(cache) if f.endswith(".engine")]) == 2


def test_another_model_file_gets_its_own_engine(fake, models, tmp_path, model_files):
    import onnx

    cache = tmp_path / "engines"
    backend(cache, model=models / "model.int8.onnx").close()
    other = tmp_path / "other" / "model.int8.onnx"
    other.parent.mkdir()
    m = onnx.load(str(model_files[1]))
    m.doc_string = "retrained"  # the same network in other bytes: another SHA-256
    onnx.save(m, str(other))
    backend(cache, model=other).close()
    assert fake.builds == 2


@pytest.mark.parametrize("damage", ["engine_bytes", "sidecar_json", "sidecar_model", "not_engine"])
def test_a_corrupt_or_mismatched_engine_is_deleted_and_rebuilt_once(fake, models, tmp_path, damage):
    cache = tmp_path / "engines"
    backend(cache, model=models / "model.int8.onnx").close()
    (engine,) = cache.glob("*.engine")
    sidecar = engine.with_suffix(".json")
    if damage == "engine_bytes":
        engine.write_bytes(engine.read_bytes()[:-7])
    elif damage == "sidecar_json":
        sidecar.write_text("{not json")
    elif damage == "sidecar_model":
        meta = json.loads(sidecar.read_text())
        sidecar.write_text(json.dumps({**meta, "model_sha256": "0" * 64}))
    else:  # right checksum, but not something this TensorRT can deserialise
        import hashlib

        engine.write_bytes(b"garbage")
        meta = json.loads(sidecar.read_text())
        meta["engine_sha256"] = hashlib.sha256(b"garbage").hexdigest()
        sidecar.write_text(json.dumps(meta))
    be = backend(cache, model=models / "model.int8.onnx")
    assert be.ready and fake.builds == 2
    assert np.allclose(be.run(x(0.5)), 0.5)
    be.close()


def test_an_engine_that_never_loads_is_a_clear_error_not_a_loop(fake, models, tmp_path):
    fake.corrupt_builds = True
    with pytest.raises(BackendError, match="even after a fresh build"):
        backend(tmp_path / "engines", model=models / "model.int8.onnx")
    assert fake.builds == 1 and fake.retained == 0
    assert not list((tmp_path / "engines").glob("*.engine"))


def test_an_engine_cache_that_cannot_be_written_is_the_backends_own_error(fake, models, tmp_path):
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state folder should be")
    with pytest.raises(BackendError, match="engine cache") as e:
        backend(blocker / "engines", model=models / "model.int8.onnx")
    assert "records.state_dir" in str(e.value) and "cache_dir" in str(e.value)
    assert fake.retained == 0


def test_cache_folder_defaults_to_the_state_dir_never_the_models():
    from edge.config import parse_config

    cfg = parse_config(
        {"records": {"state_dir": "/var/lib/x"}, "inference": {"backend": {"type": "tensorrt"}}}
    )
    assert cfg.inference.backend.cache_dir == Path("/var/lib/x/engines")


def test_engine_files_are_written_under_a_unique_temporary_name_and_renamed(tmp_path, monkeypatch):
    import os

    from edge.inference import engine_cache

    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append((Path(src).name, Path(dst).name, Path(src).read_bytes()))
        return real(src, dst)

    monkeypatch.setattr(engine_cache.os, "replace", spy)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(engine_cache.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    cache = engine_cache.EngineCache(tmp_path)
    cache.store("k", b"ENGINE", {"a": 1})
    (e_tmp, e_dst, e_data), (_, m_dst, _) = seen
    assert e_dst == "k.engine" and m_dst == "k.json"  # engine first, then its commit mark
    assert e_tmp.startswith(".k.engine.") and e_tmp.endswith(".tmp") and e_data == b"ENGINE"
    assert len(synced) >= 2
    assert cache.load("k", {"a": 1}) == b"ENGINE"


# --------------------------------------------------------------------------- build


def test_a_model_the_parser_refuses_fails_with_the_parsers_errors(fake, models, tmp_path):
    fake.parser_rejects = {"Relu"}
    with pytest.raises(BackendError, match=r"cannot parse.*No importer registered for op: Relu"):
        backend(tmp_path / "engines", model=models / "model.int8.onnx")
    assert not list((tmp_path / "engines").glob("*.engine")) and fake.retained == 0


def test_a_failed_build_is_reported_and_nothing_is_cached(fake, models, tmp_path):
    fake.fail_build = True
    with pytest.raises(BackendError, match="failed to build an engine"):
        backend(tmp_path / "engines", model=models / "model.int8.onnx")
    assert not list((tmp_path / "engines").glob("*.engine"))


def test_pycuda_errors_become_the_backends_error(fake, models, tmp_path):
    fake.alloc_error = True
    with pytest.raises(BackendError, match=r"CUDA error.*out of memory"):
        backend(tmp_path / "engines", model=models / "model.int8.onnx")
    assert fake.retained == 0


def test_missing_engine_at_start_is_built_in_the_background_while_not_ready(fake, models, tmp_path):
    fake.build_gate = threading.Event()
    be = backend(tmp_path / "engines", wait=False, model=models / "model.int8.onnx")
    assert fake.builds == 0  # load returned while the build still waits for the gate
    ready, why = be.readiness()
    assert not ready and "building the TensorRT engine" in why
    with pytest.raises(EngineNotReady, match="building"):
        be.run(x())
    fake.build_gate.set()
    assert be.wait_ready(30)
    assert np.allclose(be.run(x(0.75)), 0.75) and be.readiness()[0]
    be.close()
    assert fake.retained == 0 and fake.errors == []


def test_a_background_build_that_fails_says_why_and_stays_not_ready(fake, models, tmp_path):
    fake.fail_build = True
    be = backend(tmp_path / "engines", wait=False, model=models / "model.int8.onnx")
    assert not be.wait_ready(30)
    ready, why = be.readiness()
    assert not ready and "engine build failed" in why
    be.close()
    assert fake.retained == 0


def test_the_detector_tool_rejects_as_model_error_and_readyz_says_why_during_the_build(
    fake, models, tmp_path
):
    """The line starts (no restart loop), every item rejects, /readyz names the model."""
    from types import SimpleNamespace

    from edge.inspect.base import Services, ToolContext
    from edge.inspect.defects import DefectParams, DefectTool
    from edge.models.cards import FP32, INT8, ModelCard, save_card, sha256_file
    from edge.ops.health import model as model_check

    reg = tmp_path / "models"
    d = reg / "tiny" / "1.0.0"
    d.mkdir(parents=True)
    for f in (FP32, INT8):
        (d / f).write_bytes((models / f).read_bytes())
    save_card(
        d,
        ModelCard(
            name="tiny",
            version="1.0.0",
            status="approved",
            input_size=SIZE,
            classes=CLASSES,
            files={f: sha256_file(d / f) for f in (FP32, INT8)},
        ),
    )
    fake.build_gate = threading.Event()
    services = Services(models_dir=reg, backend=TRTConfig(cache_dir=tmp_path / "engines"))
    tool = DefectTool("defects", DefectParams(model="tiny"), services)
    res = tool.inspect(np.zeros((48, 64, 3), np.uint8), ToolContext("i", 0, 1e18))
    assert [f.code for f in res.findings] == ["MODEL_ERROR"]
    assert "building the TensorRT engine" in res.findings[0].message
    pipeline = SimpleNamespace(tools=[tool], tool_names=["defects"], alarms=None)
    pipeline.bus = SimpleNamespace(subscribe_sync=lambda *a: None)
    check = model_check(SimpleNamespace(pipeline=pipeline))
    assert check["up"] is False and "model tiny 1.0.0" in check["detail"]
    fake.build_gate.set()
    assert tool.backend.wait_ready(30)
    res = tool.inspect(np.zeros((48, 64, 3), np.uint8), ToolContext("i", 1, 1e18))
    assert res.error is None and not any(f.code == "MODEL_ERROR" for f in res.findings)
    tool.close()


# --------------------------------------------------------------------------- threads


def test_worker_threads_calling_at_once_are_serialised_on_one_context(fake, models, tmp_path):
    fake.exec_delay_s = 0.002
    be = backend(tmp_path / "engines", model=models / "model.int8.onnx")
    results, errors = [], []

    def worker(v: float) -> None:
        try:
            for _ in range(15):
                results.append(bool(np.allclose(be.run(x(v)), v)))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i / 10,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    be.close()
    assert errors == [] and len(results) == 90 and all(results)
    assert fake.overlaps == 0 and fake.errors == [] and fake.executions == 90


def test_close_while_a_call_is_in_flight_waits_for_it_and_releases_the_context(
    fake, models, tmp_path
):
    fake.exec_delay_s = 0.3
    be = backend(tmp_path / "engines", model=models / "model.int8.onnx")
    out: list = []
    t = threading.Thread(target=lambda: out.append(be.run(x(0.5))))
    t.start()
    time.sleep(0.1)  # the call is inside execute_async_v3
    be.close()
    t.join()
    assert len(out) == 1 and np.allclose(out[0], 0.5)  # finished on memory not yet freed
    assert fake.errors == [] and fake.retained == 0
    with pytest.raises(EngineNotReady):
        be.run(x())
    be.close()  # twice is harmless


def test_close_during_a_background_build_releases_the_context_after_it(fake, models, tmp_path):
    fake.build_gate = threading.Event()
    cache = tmp_path / "engines"
    be = backend(cache, wait=False, model=models / "model.int8.onnx")
    be.close()
    assert fake.retained == 1  # the build still runs with the context
    fake.build_gate.set()
    be.wait_ready(30)
    assert fake.retained == 0 and fake.errors == []
    assert list(cache.glob("*.engine"))  # the finished build is kept for the next start


# --------------------------------------------------------------------------- versions


def test_tensorrt_11_builds_a_strongly_typed_network_without_precision_flags(
    monkeypatch, models, tmp_path
):
    k = fake_tensorrt.install(monkeypatch, fake_tensorrt.Knobs(version="11.0.0"))
    be = backend(tmp_path / "engines", model=models / "model.int8.onnx")
    assert be.ready and be.precision == "typed" and k.errors == []
    assert np.allclose(be.run(x(0.5)), 0.5)
    be.close()


def test_tensorrt_8_is_refused_with_the_reason(monkeypatch, models, tmp_path):
    fake_tensorrt.install(monkeypatch, fake_tensorrt.Knobs(version="8.5.2"))
    with pytest.raises(BackendError, match="JetPack 6"):
        backend(tmp_path / "engines", model=models / "model.int8.onnx")


def test_an_unknown_major_version_is_refused(monkeypatch, models, tmp_path):
    fake_tensorrt.install(monkeypatch, fake_tensorrt.Knobs(version="12.0.0"))
    with pytest.raises(BackendError, match="newer than this backend knows"):
        backend(tmp_path / "engines", model=models / "model.int8.onnx")


def test_no_engine_from_a_file_of_the_wrong_precision(fake, models, tmp_path):
    """int8 builds only from the Q/DQ file the registry resolved; never from FP32 with a
    calibrator (an engine nobody verified)."""
    with pytest.raises(BackendError, match="no Q/DQ nodes"):
        backend(tmp_path / "engines", model=models / "model.onnx")
    with pytest.raises(BackendError, match="int8 is false"):
        backend(tmp_path / "engines", model=models / "model.int8.onnx", int8=False)
    be = backend(tmp_path / "engines", model=models / "model.onnx", int8=False)
    assert be.precision == "fp16" and be.ready
    be.close()
    assert fake.builds == 1


def test_tool_precision_and_backend_int8_are_checked_together_at_config_check():
    from edge.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"recipes\.vials\.tools\.\d+\.precision: 'int8'"):
        parse_config({"inference": {"backend": {"type": "tensorrt", "int8": False}}})
    fp32 = {"type": "defects", "model": "defects", "precision": "fp32"}
    with pytest.raises(ConfigError, match=r"recipes\.mine\.tools\.0\.precision: 'fp32'"):
        parse_config(
            {
                "inference": {"backend": {"type": "tensorrt"}},
                "recipes": {"mine": {"name": "mine", "tools": [fp32]}},
            }
        )
    parse_config({"inference": {"backend": {"type": "tensorrt"}}})  # the defaults agree


# --------------------------------------------------------------------------- CLI


def test_edge_model_build_engine_builds_into_the_state_dir_and_then_finds_it(
    fake, models, tmp_path
):
    import yaml
    from typer.testing import CliRunner

    from edge.models.cards import FP32, INT8, ModelCard, save_card, sha256_file
    from edge.train.cli import model_app

    reg = tmp_path / "opt" / "registry"
    d = reg / "tiny" / "1.0.0"
    d.mkdir(parents=True)
    for f in (FP32, INT8):
        (d / f).write_bytes((models / f).read_bytes())
    card = ModelCard(
        name="tiny",
        version="1.0.0",
        status="candidate",
        input_size=SIZE,
        classes=CLASSES,
        files={f: sha256_file(d / f) for f in (FP32, INT8)},
    )
    save_card(d, card)
    state = tmp_path / "state"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"records": {"state_dir": str(state)}}))  # ONNX line config
    run = CliRunner().invoke
    r = run(model_app, ["build-engine", "tiny", "--models", str(reg), "--config", str(cfg)])
    assert r.exit_code == 1 and "no approved version" in r.output  # only approved models
    card.status = "approved"
    save_card(d, card)
    r = run(model_app, ["build-engine", "tiny", "--models", str(reg), "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    assert str(state / "engines") in r.output and fake.builds == 1
    r = run(
        model_app, ["build-engine", "tiny", "1.0.0", "--models", str(reg), "--config", str(cfg)]
    )
    assert r.exit_code == 0 and fake.builds == 1  # cached
    assert fake.retained == 0


# --------------------------------------------------------------------------- the line


def test_the_line_starts_while_the_engine_builds_rejects_until_ready_and_then_only_loads(
    fake, tmp_path
):
    """The shipped default recipe on the TensorRT backend, no engine cached: the appliance
    starts at once (no start timeout, no restart loop), every item is a MODEL_ERROR reject
    while the engine builds, /readyz says why and the watchdog still sees progress. The
    next start loads the engine the build left in the state dir."""
    from edge.app import Appliance
    from edge.config import SimulatorSource, parse_config
    from edge.domain import Verdict
    from edge.ops.health import model as model_check
    from edge.ops.progress import Progress
    from edge.sim.twin import LineSimulator

    from fake_tools import ListSource

    root = Path(__file__).resolve().parents[1]
    sim = LineSimulator(SimulatorSource(scenario="vials", seed=51, defect_rate=0.0))
    images = [sim.render(i)[0] for i in range(3)]
    cfg = parse_config(
        {
            "records": {"state_dir": str(tmp_path / "state")},
            "recipe": "vials",
            "pipeline": {"deadline_ms": 5000},
            "web": {"enabled": False},
            "inference": {"backend": {"type": "tensorrt"}, "models_dir": str(root / "models")},
        }
    )

    def run(app):
        got = []
        app.pipeline.bus.subscribe_sync("verdict", lambda _t, item: got.append(item))
        app.start()
        app.pipeline.wait(60)
        return got

    fake.build_gate = threading.Event()
    first = Appliance(cfg, source=ListSource(images, paced=False), components=False)
    assert fake.builds == 0  # constructed while the build still waits for the gate
    progress = Progress.of(first)
    items = run(first)
    check = model_check(first)
    assert len(items) == 3 and all(i.verdict == Verdict.REJECT for i in items)
    assert all("MODEL_ERROR" in i.reasons for i in items)
    assert check["up"] is False and "building the TensorRT engine" in check["detail"]
    assert progress.last_inspected_at is not None  # verdicts flow: the watchdog keeps pinging
    (detector,) = [t for t in first.pipeline.tools if t.name == "defects"]
    first.stop()  # closed while the build still runs: it finishes and keeps its engine
    fake.build_gate.set()
    detector.backend.wait_ready(30)
    assert fake.builds == 1 and fake.retained == 0

    second = Appliance(cfg, source=ListSource(images, paced=False), components=False)
    items = run(second)
    second.stop()
    assert len(items) == 3 and not any("MODEL_ERROR" in i.reasons for i in items)
    assert fake.builds == 1 and fake.errors == [] and fake.retained == 0


def test_edge_model_approve_builds_the_engine_when_the_line_runs_tensorrt(fake, models, tmp_path):
    import yaml
    from typer.testing import CliRunner

    from edge.models.cards import FP32, INT8, ModelCard, load_card, save_card, sha256_file
    from edge.train.cli import model_app

    reg = tmp_path / "registry"
    d = reg / "tiny" / "1.0.0"
    d.mkdir(parents=True)
    for f in (FP32, INT8):
        (d / f).write_bytes((models / f).read_bytes())
    files = {f: sha256_file(d / f) for f in (FP32, INT8)}
    verify = {"passed": True, "summary": "ok", "int8_sha256": files[INT8]}
    save_card(
        d,
        ModelCard(
            name="tiny",
            version="1.0.0",
            input_size=SIZE,
            classes=CLASSES,
            files=files,
            verify=verify,
        ),
    )
    state = tmp_path / "state"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"records": {"state_dir": str(state)}, "inference": {"backend": {"type": "tensorrt"}}}
        )
    )
    args = ["approve", "tiny", "1.0.0", "--reason", "verified", "--by", "qa"]
    r = CliRunner().invoke(model_app, [*args, "--models", str(reg), "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    assert load_card(d).status == "approved" and fake.builds == 1
    assert "engine: " + str(state / "engines") in r.output
