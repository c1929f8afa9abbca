"""TensorRT backend with pycuda, for Jetson-class devices (JetPack 6 and later).

- Supported: TensorRT 10 (JetPack 6) and 11. The engine is built only from the file the
  registry hands over, the verified and approved INT8 Q/DQ ONNX (explicit quantisation),
  or the FP32 reference when the tool's precision is `fp32`. TensorRT 8 (JetPack 5) is
  refused: its INT8 path calibrates the FP32 file itself, which would be an engine from a
  model nobody verified, and JetPack 5's Python 3.8 cannot run this project anyway.
- TensorRT 10 builds a weakly typed network with the INT8 flag (Q/DQ says what is INT8)
  and FP16 for the rest where the GPU has fast FP16. TensorRT 11 has no precision flags:
  the network is strongly typed and each tensor keeps the type the ONNX file gives it.
- Engines are built at install and approval time (`edge model build-engine`) into the
  cache under the state directory (edge.inference.engine_cache); at service start the
  backend only loads. An engine missing at start is built in a background thread while
  `ready` is false: the detector tool rejects every item as MODEL_ERROR and /readyz says
  why, rather than block the start (the unit's start timeout would restart it forever).
- A corrupt or mismatched engine is deleted and rebuilt once, then a clear error.
- Inference: one execution context, one CUDA stream, pycuda device buffers, the tensor
  address API (`set_tensor_address` + `execute_async_v3`); each call holds the lock and
  pushes the CUDA primary context, and `close()` takes the same lock, so teardown while a
  call is in flight waits for it. `close()` releases the primary context it retained.

Everything that does not need a GPU (cache keys and files, buffer planning, the checks
on the ONNX file) is plain Python; tests/fake_tensorrt.py runs the control flow here.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edge.inference.base import Backend, BackendError
from edge.inference.engine_cache import (
    CacheMismatch,
    DeviceInfo,
    EngineCache,
    default_cache_dir,
    engine_cache_key,
    engine_meta,
)
from edge.inference.qdq_check import check_qdq_model

log = logging.getLogger(__name__)

#: TensorRT major versions this backend is written and tested against (see module docstring)
SUPPORTED_MAJORS = (10, 11)


class EngineNotReady(BackendError):
    """The engine is still being built (or its build failed): nothing may be inferred yet."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- buffers


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One I/O tensor of an engine, as the engine reports it."""

    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: Any  # numpy dtype


@dataclass(frozen=True, slots=True)
class BufferPlan:
    input: TensorSpec
    outputs: list[TensorSpec]

    @property
    def tensors(self) -> list[TensorSpec]:
        return [self.input, *self.outputs]

    def nbytes(self, spec: TensorSpec) -> int:
        return int(np.prod(spec.shape)) * np.dtype(spec.dtype).itemsize


def plan_buffers(tensors: list[TensorSpec], input_size: int, num_classes: int) -> BufferPlan:
    """Check the engine's tensors against the card and size the host/device buffers.

    A detector here has one static input 1x3xSxS and its first output 1x(4+C)xN; dynamic
    dimensions (-1) are refused: engines are built for one shape, like the ONNX.
    """
    inputs = [t for t in tensors if t.is_input]
    outputs = [t for t in tensors if not t.is_input]
    if len(inputs) != 1:
        raise BackendError(f"engine has {len(inputs)} inputs, a detector has exactly one")
    if not outputs:
        raise BackendError("engine has no outputs")
    for t in tensors:
        if any(int(d) < 0 for d in t.shape):
            raise BackendError(f"tensor {t.name!r} has a dynamic shape {t.shape}: build static")
    inp = inputs[0]
    want = (1, 3, input_size, input_size)
    if tuple(inp.shape) != want:
        raise BackendError(f"engine input {inp.name!r} is {tuple(inp.shape)}, card says {want}")
    out = outputs[0]
    if len(out.shape) != 3 or out.shape[0] != 1 or out.shape[1] != 4 + num_classes:
        raise BackendError(
            f"engine output {out.name!r} is {tuple(out.shape)}, expected (1, {4 + num_classes}, N)"
        )
    return BufferPlan(input=inp, outputs=outputs)


# --------------------------------------------------------------------------- runtime


def _import_runtime():
    try:
        import pycuda.driver as cuda
        import tensorrt as trt
    except ImportError as exc:
        raise BackendError(
            "the TensorRT backend needs the `tensorrt` and `pycuda` Python packages and an "
            f"NVIDIA GPU (JetPack 6 or later on Jetson); not available here: {exc}. "
            "Use `type: onnx` or install TensorRT."
        ) from exc
    return trt, cuda


def trt_major(trt: Any) -> int:
    try:
        return int(str(trt.__version__).split(".")[0])
    except ValueError:
        return 0


def check_tensorrt_version(trt: Any) -> int:
    """The major version, or a BackendError saying why this TensorRT is not used."""
    major = trt_major(trt)
    if major < 10:
        raise BackendError(
            f"TensorRT {trt.__version__} is not supported: engines are built only from the "
            "verified INT8 Q/DQ file, which needs TensorRT 10 or later (JetPack 6 or later). "
            "JetPack 5 (TensorRT 8.5, Python 3.8) cannot run edge-inspect: upgrade to "
            "JetPack 6, or use `inference.backend.type: onnx`"
        )
    if major not in SUPPORTED_MAJORS:
        raise BackendError(
            f"TensorRT {trt.__version__} is newer than this backend knows "
            f"({', '.join(f'{m}.x' for m in SUPPORTED_MAJORS)}): its Python API may differ. "
            "Use a supported TensorRT or `inference.backend.type: onnx`"
        )
    return major


def strongly_typed(trt: Any) -> bool:
    """TensorRT 11 removed the precision flags: networks are strongly typed."""
    return not hasattr(trt.BuilderFlag, "INT8")


def device_info(cuda: Any, dev: Any) -> DeviceInfo:
    return DeviceInfo(
        name=str(dev.name()),
        compute_capability=tuple(int(v) for v in dev.compute_capability()),  # type: ignore[arg-type]
        sm_count=int(dev.get_attribute(cuda.device_attribute.MULTIPROCESSOR_COUNT)),
        total_memory=int(dev.total_memory()),
    )


def precision_of(trt: Any, int8: bool, fp16: bool) -> str:
    """The precision part of the cache key, as this runtime will build."""
    if strongly_typed(trt):
        return "typed"  # the types come from the file (INT8 where Q/DQ says so)
    return "-".join(p for p, on in (("int8", int8), ("fp16", fp16)) if on) or "fp32"


def build_serialized(
    trt: Any, logger: Any, source: Path, int8: bool, fp16: bool, workspace: int
) -> bytes:
    """Parse the ONNX file and build a serialized engine (needs a current CUDA context)."""
    builder = trt.Builder(logger)
    typed = strongly_typed(trt)
    flags = 0
    if typed:
        flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        flags = 0 if flag is None else 1 << int(flag)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise BackendError(f"cannot read {source}: {exc.strerror or exc}") from None
    if not parser.parse(data):
        errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise BackendError(
            f"TensorRT {trt.__version__} cannot parse {source}: "
            + ("; ".join(errs) or "no error reported")
        )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace))
    if not typed:
        if fp16 and getattr(builder, "platform_has_fast_fp16", False):
            config.set_flag(trt.BuilderFlag.FP16)
        if int8:
            config.set_flag(trt.BuilderFlag.INT8)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(
            f"TensorRT {trt.__version__} failed to build an engine from {source} "
            "(its log above says why)"
        )
    return bytes(serialized)


class TensorRTBackend(Backend):
    type_key: ClassVar[str] = "tensorrt"

    def __init__(self, config: Any = None):
        super().__init__(config)
        self._lock = threading.RLock()  # one execution context: one call, or teardown, at a time
        self._ready = threading.Event()
        self._closed = False
        self._state = "not loaded"
        self._since = time.monotonic()
        self._builder: threading.Thread | None = None
        self._building = False  # a background build owns the CUDA context until it ends
        self.cuda_ctx: Any = None
        self.engine_path: Path | None = None

    # -- readiness
    @property
    def ready(self) -> bool:
        return self._ready.is_set() and not self._closed

    def readiness(self) -> tuple[bool, str]:
        if self._closed:
            return False, "closed"
        if self._ready.is_set():
            return True, f"engine loaded ({self.engine_path})"
        return False, f"{self._state} ({time.monotonic() - self._since:.0f} s)"

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Until the engine is loaded (or its build failed: then False)."""
        t = self._builder
        if t is not None:
            t.join(timeout)
        return self.ready

    def _set_state(self, state: str) -> None:
        self._state, self._since = state, time.monotonic()

    # -- loading
    def _load(self) -> None:
        trt, cuda = _import_runtime()
        self.trt, self.cuda = trt, cuda
        self.major = check_tensorrt_version(trt)
        int8, fp16 = self._precision()
        source = self._checked_source(int8)
        self.logger = trt.Logger(trt.Logger.WARNING)
        try:
            self.model_sha = sha256_file(source)
        except OSError as exc:
            raise BackendError(f"cannot read {source}: {exc.strerror or exc}") from None
        try:
            cuda.init()
            if cuda.Device.count() < 1:
                raise BackendError("no CUDA device found for the TensorRT backend")
            dev = cuda.Device(0)
            self.device_info = device_info(cuda, dev)
            self.cuda_ctx = dev.retain_primary_context()
        except cuda.Error as exc:
            raise BackendError(f"CUDA is not usable ({type(exc).__name__}: {exc})") from None
        self.gpu_name = self.device_info.name
        self.precision = precision_of(trt, int8, fp16)
        self.cache = EngineCache(getattr(self.config, "cache_dir", None) or default_cache_dir())
        self.key = engine_cache_key(
            trt.__version__, self.device_info, self.model_sha, self.precision
        )
        self.meta = engine_meta(trt.__version__, self.device_info, self.model_sha, self.precision)
        self.source = source
        self.engine_path = self.cache.paths(self.key)[0]
        self.providers = [f"TensorRT {trt.__version__} on {self.gpu_name} ({self.precision})"]
        try:
            data = self._cached()
            if data is not None:
                self._activate_or_rebuild(data)
            elif self.wait_on_load:
                self._build_and_activate()
            else:
                self._start_background_build()
        except BaseException:
            with self._lock:
                if not self._building:
                    self._release()
            raise

    def _precision(self) -> tuple[bool, bool]:
        return bool(getattr(self.config, "int8", True)), bool(getattr(self.config, "fp16", True))

    def _checked_source(self, int8: bool) -> Path:
        """The file the engine is built from: the one the registry resolved, checked for
        what TensorRT imports, and of the precision the config says."""
        path = Path(self.model_path)  # type: ignore[arg-type]
        if int8:
            try:
                check_qdq_model(path)
            except BackendError as exc:
                raise BackendError(
                    f"{exc} (inference.backend.int8 is true: the tool's precision must be int8)"
                ) from None
            return path
        info = check_qdq_model(path, require_qdq=False)
        if info["quantize_linear"] or info["dequantize_linear"]:
            raise BackendError(
                f"{path} is an INT8 Q/DQ model but inference.backend.int8 is false: set int8 "
                "true, or the tool's precision to fp32"
            )
        return path

    def _cached(self) -> bytes | None:
        try:
            return self.cache.load(self.key, self.meta)
        except CacheMismatch as exc:
            log.warning("%s: deleting it and building again", exc)
            self.cache.discard(self.key)
            return None

    def _activate_or_rebuild(self, data: bytes) -> None:
        try:
            self._activate(data)
        except CacheMismatch as exc:
            log.warning("%s: deleting it and building again", exc)
            self.cache.discard(self.key)
            if self.wait_on_load:
                self._build_and_activate()
            else:
                self._start_background_build()

    def _build_and_activate(self) -> None:
        """Build (or take what another process built meanwhile) and load it; an engine that
        does not load even then is deleted and reported, not rebuilt again."""
        data = self._build_and_store()
        with self._lock:
            if self._closed:
                return
            try:
                self._activate(data)
            except CacheMismatch as exc:
                self.cache.discard(self.key)
                raise BackendError(
                    f"{exc}, even after a fresh build: TensorRT, the GPU driver or the model "
                    "file is broken; reinstall JetPack's TensorRT or use `type: onnx`"
                ) from None

    def _build_and_store(self) -> bytes:
        """Build under the cache's lock; another process may have built it meanwhile."""
        int8, fp16 = self._precision()
        workspace = int(getattr(self.config, "workspace_mb", 1024)) << 20
        self._set_state(f"no engine cached: building the TensorRT engine from {self.source}")
        with self.cache.build_lock(self.key):
            data = self._cached()
            if data is not None:
                return data
            log.info("building TensorRT engine %s from %s", self.key, self.source)
            t0 = time.monotonic()
            with self._context():
                data = build_serialized(self.trt, self.logger, self.source, int8, fp16, workspace)
            self.cache.store(self.key, data, self.meta)
            log.info("built %s in %.0f s", self.engine_path, time.monotonic() - t0)
        return data

    def _start_background_build(self) -> None:
        self._set_state(f"no engine cached: building the TensorRT engine from {self.source}")
        self._building = True
        self._builder = threading.Thread(
            target=self._background_build, name="tensorrt-build", daemon=True
        )
        self._builder.start()

    def _background_build(self) -> None:
        try:
            self._build_and_activate()
        except Exception as exc:  # the state says why; the line keeps rejecting
            log.error("TensorRT engine build failed: %s", exc)
            self._set_state(f"engine build failed: {exc}")
        finally:
            with self._lock:
                self._building = False
                if self._closed:
                    self._release()

    @contextlib.contextmanager
    def _context(self) -> Iterator[None]:
        """The primary context current for a block; pycuda errors become BackendError."""
        cuda = self.cuda
        try:
            self.cuda_ctx.push()
        except cuda.Error as exc:
            raise BackendError(f"cannot make the CUDA context current: {exc}") from None
        try:
            yield
        except cuda.Error as exc:
            raise BackendError(
                f"CUDA error in the TensorRT backend ({type(exc).__name__}: {exc}); if it "
                "persists, restart the service and check the GPU (tegrastats, dmesg)"
            ) from exc
        finally:
            try:
                cuda.Context.pop()
            except cuda.Error:
                log.exception("CUDA context pop failed")

    def _activate(self, data: bytes) -> None:
        """Deserialize, plan and allocate; CacheMismatch when the bytes are not an engine
        this runtime can use."""
        trt, cuda = self.trt, self.cuda
        with self._lock, self._context():
            engine = trt.Runtime(self.logger).deserialize_cuda_engine(data)
            if engine is None:
                raise CacheMismatch(
                    f"TensorRT {trt.__version__} could not deserialize {self.engine_path}"
                )
            context = engine.create_execution_context()
            if context is None:
                raise BackendError("TensorRT could not create an execution context (GPU memory?)")
            plan = plan_buffers(self._tensor_specs(engine), self.input_size, len(self.class_names))
            host = {t.name: cuda.pagelocked_empty(t.shape, t.dtype) for t in plan.tensors}
            device = {t.name: cuda.mem_alloc(plan.nbytes(t)) for t in plan.tensors}
            for t in plan.tensors:
                context.set_tensor_address(t.name, int(device[t.name]))
            self.engine, self.context, self.plan = engine, context, plan
            self.host, self.device, self.stream = host, device, cuda.Stream()
            self._set_state("ready")
            self._ready.set()

    def _tensor_specs(self, e: Any) -> list[TensorSpec]:
        trt = self.trt
        return [
            TensorSpec(
                name=(name := e.get_tensor_name(i)),
                is_input=e.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                shape=tuple(e.get_tensor_shape(name)),
                dtype=np.dtype(trt.nptype(e.get_tensor_dtype(name))),
            )
            for i in range(e.num_io_tensors)
        ]

    # -- inference
    def run(self, tensor: np.ndarray) -> np.ndarray:
        if not self._ready.is_set() or self._closed:
            raise EngineNotReady(f"TensorRT engine not ready: {self.readiness()[1]}")
        cuda = self.cuda
        with self._lock:
            if self._closed:
                raise EngineNotReady("TensorRT backend closed")
            plan = self.plan
            if tuple(tensor.shape) != tuple(plan.input.shape):
                raise BackendError(
                    f"input tensor {tensor.shape} != engine input {plan.input.shape}"
                )
            with self._context():
                inp = self.host[plan.input.name]
                np.copyto(inp, tensor.astype(plan.input.dtype, copy=False))
                cuda.memcpy_htod_async(self.device[plan.input.name], inp, self.stream)
                if not self.context.execute_async_v3(stream_handle=self.stream.handle):
                    raise BackendError("TensorRT execution failed")
                out = plan.outputs[0]
                cuda.memcpy_dtoh_async(self.host[out.name], self.device[out.name], self.stream)
                self.stream.synchronize()
                return np.array(self.host[out.name], dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        ready, detail = self.readiness()
        return {**super().describe(), "ready": ready, "state": detail}

    # -- teardown
    def close(self) -> None:
        """Free everything; waits for a call in flight. A build in progress finishes in its
        thread (TensorRT cannot cancel one) and stores its engine; the context is released
        after it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._ready.clear()
            if not self._building:
                self._release()

    def _release(self) -> None:
        """Free buffers and TensorRT objects with the context current, then release it.

        pycuda releases a primary context only from the thread that retained it (the one
        that called `load`); when `close()` came during a background build, this runs in
        the build thread and pycuda may leave the release to process exit."""
        ctx, self.cuda_ctx = self.cuda_ctx, None
        if ctx is None:
            return
        cuda = self.cuda
        try:
            ctx.push()
        except Exception:
            log.exception("CUDA context push at close failed")
            return
        try:
            for buf in getattr(self, "device", {}).values():
                try:
                    buf.free()
                except cuda.Error:
                    log.exception("freeing a device buffer failed")
            self.device, self.host = {}, {}
            self.context = self.engine = self.stream = None
        finally:
            try:
                cuda.Context.pop()
            except cuda.Error:
                log.exception("CUDA context pop at close failed")
            try:
                ctx.detach()  # the retain of the primary context taken at load
            except cuda.Error:
                log.exception("releasing the CUDA primary context failed")
