"""A test double for the `tensorrt` and `pycuda.driver` modules, to run the TensorRT
backend's control flow on a machine without a GPU.

It follows the Python API surface the backend uses, as TensorRT 10.x and 11.x and pycuda
2024.x define it: `Logger`, `Builder` (`create_network(flags)`,
`create_builder_config()`, `build_serialized_network` returning None on failure,
`platform_has_fast_fp16` on 10 only), `BuilderFlag` (INT8/FP16 on 10; gone on 11, where
networks are strongly typed via `NetworkDefinitionCreationFlag.STRONGLY_TYPED`),
`OnnxParser` (`parse(bytes) -> bool`, `num_errors`, `get_error(i)`), `Runtime.
deserialize_cuda_engine` (None for bytes it cannot use), the tensor I/O API
(`num_io_tensors`, `get_tensor_name/mode/shape/dtype`, `set_tensor_address`,
`execute_async_v3`), `nptype`; pycuda's `init`, `Device` (`name`, `compute_capability`,
`total_memory`, `get_attribute`, `retain_primary_context`), `Context` (`push`, static
`pop`, `detach`), `mem_alloc`, `pagelocked_empty`, `Stream`, the async copies, and its
`Error` hierarchy. Like the real driver, memory calls need a current context and raise
`LogicError` without one.

What it checks that the real thing would also refuse: a CUDA call without the context
current, use of freed device memory, two executions on one execution context at once,
an engine deserialised by another TensorRT version or GPU, an ONNX DequantizeLinear on
INT32 (what onnx-tensorrt 10.x rejects), precision flags set on a strongly typed network.

What it does NOT prove: anything about numerics or real kernels (the "engine" is a JSON
record and its output a fixed function of the input), build times, GPU memory limits,
the exact text of TensorRT's errors, or that the real bindings accept these calls with
these argument types. That is the GPU test's job (docs/deployment.md: run it on a Jetson).
"""

from __future__ import annotations

import json
import sys
import threading
import time
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAGIC = b"FAKETRT1"


@dataclass
class Knobs:
    """What a test can set or read on the double."""

    version: str = "10.3.0"
    gpu_name: str = "Orin (nvgpu)"
    compute_capability: tuple[int, int] = (8, 7)
    sm_count: int = 16
    total_memory: int = 64 * 2**30
    build_gate: threading.Event | None = None  # builds wait for it (background-build tests)
    fail_build: bool = False
    corrupt_builds: bool = False  # builds return bytes no runtime can deserialise
    parser_rejects: set[str] = field(default_factory=set)  # op types the parser refuses
    alloc_error: bool = False  # mem_alloc raises pycuda's MemoryError (out of GPU memory)
    exec_delay_s: float = 0.0
    builds: int = 0
    executions: int = 0
    overlaps: int = 0  # executions that overlapped on one execution context (must stay 0)
    retained: int = 0  # primary-context retains not yet released
    errors: list[str] = field(default_factory=list)  # misuse a real driver would refuse


def _modules(k: Knobs) -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    major = int(k.version.split(".")[0])
    typed_only = major >= 11

    # ------------------------------------------------------------------ pycuda.driver
    cuda = types.ModuleType("pycuda.driver")
    tls = threading.local()
    memory: dict[int, bytearray] = {}
    next_ptr = [0x1000]

    class Error(Exception):
        pass

    class LogicError(Error):
        pass

    class RuntimeError_(Error):
        pass

    class MemoryError_(Error):
        pass

    def stack() -> list:
        if not hasattr(tls, "stack"):
            tls.stack = []
        return tls.stack

    def need_context(what: str) -> None:
        if not stack():
            k.errors.append(f"{what} without a current context")
            raise LogicError(f"{what} failed: invalid device context")

    class Context:
        def __init__(self) -> None:
            self.detached = False

        def push(self) -> None:
            if self.detached:
                raise LogicError("cuCtxPushCurrent failed: context was destroyed")
            stack().append(self)

        @staticmethod
        def pop() -> None:
            if not stack():
                raise LogicError("cuCtxPopCurrent failed: invalid context")
            stack().pop()

        @staticmethod
        def get_current() -> Context | None:
            return stack()[-1] if stack() else None

        def detach(self) -> None:
            if self.detached:
                raise LogicError("context already detached")
            self.detached = True
            k.retained -= 1

    class device_attribute:
        MULTIPROCESSOR_COUNT = 16

    class Device:
        @staticmethod
        def count() -> int:
            return 1

        def __init__(self, i: int) -> None:
            if i != 0:
                raise LogicError("cuDeviceGet failed: invalid device ordinal")

        def name(self) -> str:
            return k.gpu_name

        def compute_capability(self) -> tuple[int, int]:
            return k.compute_capability

        def total_memory(self) -> int:
            return k.total_memory

        def get_attribute(self, attr: int) -> int:
            assert attr == device_attribute.MULTIPROCESSOR_COUNT
            return k.sm_count

        def retain_primary_context(self) -> Context:
            k.retained += 1
            return Context()

    class DeviceAllocation:
        def __init__(self, n: int) -> None:
            self.ptr = next_ptr[0]
            next_ptr[0] += max(n, 1) + 256
            memory[self.ptr] = bytearray(n)

        def __int__(self) -> int:
            return self.ptr

        def free(self) -> None:
            need_context("cuMemFree")
            if memory.pop(self.ptr, None) is None:
                raise LogicError("cuMemFree failed: invalid argument")

    def mem_alloc(n: int) -> DeviceAllocation:
        need_context("cuMemAlloc")
        if k.alloc_error:
            raise MemoryError_("cuMemAlloc failed: out of memory")
        return DeviceAllocation(n)

    def buf(ptr: Any) -> bytearray:
        p = int(ptr)
        if p not in memory:
            k.errors.append(f"access to freed or unknown device memory {p:#x}")
            raise LogicError("cuMemcpy failed: an illegal memory access was encountered")
        return memory[p]

    class Stream:
        _n = [0]

        def __init__(self) -> None:
            need_context("cuStreamCreate")
            Stream._n[0] += 1
            self.handle = 0x5000 + Stream._n[0]

        def synchronize(self) -> None:
            need_context("cuStreamSynchronize")

    def memcpy_htod_async(dest: Any, src: np.ndarray, stream: Any = None) -> None:
        need_context("cuMemcpyHtoDAsync")
        b = buf(dest)
        raw = np.ascontiguousarray(src).tobytes()
        b[: len(raw)] = raw

    def memcpy_dtoh_async(dest: np.ndarray, src: Any, stream: Any = None) -> None:
        need_context("cuMemcpyDtoHAsync")
        b = buf(src)
        dest[...] = np.frombuffer(bytes(b[: dest.nbytes]), dtype=dest.dtype).reshape(dest.shape)

    cuda.Error, cuda.LogicError = Error, LogicError
    cuda.RuntimeError, cuda.MemoryError = RuntimeError_, MemoryError_
    cuda.init = lambda flags=0: None
    cuda.Context, cuda.Device, cuda.device_attribute = Context, Device, device_attribute
    cuda.mem_alloc, cuda.Stream = mem_alloc, Stream
    cuda.pagelocked_empty = lambda shape, dtype: np.empty(shape, dtype)
    cuda.memcpy_htod_async, cuda.memcpy_dtoh_async = memcpy_htod_async, memcpy_dtoh_async
    cuda.memcpy_htod = memcpy_htod_async

    pycuda = types.ModuleType("pycuda")
    pycuda.driver = cuda  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ tensorrt
    trt = types.ModuleType("tensorrt")
    trt.__version__ = k.version

    class Logger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self, severity: int = 2) -> None:
            self.severity = severity

    class _Enum:
        def __init__(self, **values: int) -> None:
            self.__dict__.update(values)

    flags = {"FP16": 0, "INT8": 1, "REFIT": 3} if not typed_only else {"REFIT": 3}
    trt.BuilderFlag = _Enum(**flags)
    trt.NetworkDefinitionCreationFlag = _Enum(EXPLICIT_BATCH=0, STRONGLY_TYPED=1)
    trt.MemoryPoolType = _Enum(WORKSPACE=0)
    trt.TensorIOMode = _Enum(NONE=0, INPUT=1, OUTPUT=2)
    trt.DataType = _Enum(FLOAT=0, HALF=1, INT8=2, INT32=3)
    trt.nptype = lambda dt: {0: np.float32, 1: np.float16, 2: np.int8, 3: np.int32}[dt]

    class Network:
        def __init__(self, flags: int) -> None:
            self.strongly_typed = bool(
                flags & (1 << trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
            )
            self.io: list[tuple[str, bool, list[int]]] = []

    class ParserError:
        def __init__(self, desc: str, node: str = "") -> None:
            self._desc, self._node = desc, node

        def desc(self) -> str:
            return self._desc

        def __str__(self) -> str:
            return f"In node {self._node!r}: {self._desc}" if self._node else self._desc

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.network, self.errors = network, []

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i: int) -> ParserError:
            return self.errors[i]

        def parse(self, data: bytes) -> bool:
            import onnx

            try:
                m = onnx.load_from_string(bytes(data))
            except Exception as exc:
                self.errors.append(ParserError(f"failed to parse ONNX model: {exc}"))
                return False
            inits = {i.name: i for i in m.graph.initializer}
            for n in m.graph.node:
                x = inits.get(n.input[0]) if n.input else None
                if n.op_type == "DequantizeLinear" and x is not None and x.data_type == 6:
                    self.errors.append(
                        ParserError("Assertion failed: DequantizeLinear input must be INT8", n.name)
                    )
                if n.op_type in k.parser_rejects:
                    self.errors.append(
                        ParserError(f"No importer registered for op: {n.op_type}", n.name)
                    )
            if self.errors:
                return False
            for v, is_in in [(i, True) for i in m.graph.input if i.name not in inits] + [
                (o, False) for o in m.graph.output
            ]:
                dims = [d.dim_value or -1 for d in v.type.tensor_type.shape.dim]
                self.network.io.append((v.name, is_in, dims))
            return True

    class BuilderConfig:
        def __init__(self, network_typed: bool) -> None:
            self.flags: set[int] = set()
            self.pool: dict[int, int] = {}

        def set_memory_pool_limit(self, pool: int, size: int) -> None:
            self.pool[pool] = size

        def set_flag(self, flag: int) -> None:
            self.flags.add(flag)

    class Builder:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger
            if not typed_only:
                self.platform_has_fast_fp16 = True

        def create_network(self, flags: int = 0) -> Network:
            return Network(flags)

        def create_builder_config(self) -> BuilderConfig:
            return BuilderConfig(False)

        def build_serialized_network(self, network: Network, config: BuilderConfig):
            need_context("build")
            if k.build_gate is not None:
                k.build_gate.wait(30)
            k.builds += 1
            precision = {
                f for f in ("INT8", "FP16") if getattr(trt.BuilderFlag, f, -1) in config.flags
            }
            if network.strongly_typed and precision:
                k.errors.append("precision flags on a strongly typed network")
                return None
            if k.fail_build or not network.io:
                return None
            if k.corrupt_builds:
                return b"not an engine"
            record = {
                "version": k.version,
                "gpu": k.gpu_name,
                "io": network.io,
                "precision": sorted(precision),
                "typed": network.strongly_typed,
            }
            return MAGIC + json.dumps(record).encode()

    class ExecutionContext:
        def __init__(self, engine: Engine) -> None:
            self.engine, self.addresses = engine, {}
            self.busy = threading.Lock()

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            self.addresses[name] = int(ptr)
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            need_context("enqueue")
            if not self.busy.acquire(blocking=False):
                k.overlaps += 1
                return False
            try:
                if k.exec_delay_s:
                    time.sleep(k.exec_delay_s)
                (iname, _, ishape), *outs = self.engine.io
                x = np.frombuffer(
                    bytes(buf(self.addresses[iname])[: int(np.prod(ishape)) * 4]), np.float32
                )
                for name, _, shape in outs:
                    y = np.full(int(np.prod(shape)), float(x.mean()), np.float32)
                    buf(self.addresses[name])[: y.nbytes] = y.tobytes()
                k.executions += 1
                return True
            finally:
                self.busy.release()

    class Engine:
        def __init__(self, record: dict) -> None:
            self.io = [tuple(t) for t in record["io"]]
            self.io.sort(key=lambda t: not t[1])  # inputs first

        @property
        def num_io_tensors(self) -> int:
            return len(self.io)

        def get_tensor_name(self, i: int) -> str:
            return self.io[i][0]

        def _t(self, name: str) -> tuple:
            return next(t for t in self.io if t[0] == name)

        def get_tensor_mode(self, name: str) -> int:
            return trt.TensorIOMode.INPUT if self._t(name)[1] else trt.TensorIOMode.OUTPUT

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return tuple(self._t(name)[2])

        def get_tensor_dtype(self, name: str) -> int:
            return trt.DataType.FLOAT

        def create_execution_context(self) -> ExecutionContext:
            need_context("create_execution_context")
            return ExecutionContext(self)

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            need_context("deserialize")
            data = bytes(data)
            if not data.startswith(MAGIC):
                return None  # the real runtime logs "Serialization assertion failed"
            try:
                record = json.loads(data[len(MAGIC) :])
            except ValueError:
                return None
            if record["version"] != k.version or record["gpu"] != k.gpu_name:
                return None
            return Engine(record)

    trt.Logger, trt.Builder, trt.OnnxParser, trt.Runtime = Logger, Builder, OnnxParser, Runtime
    return trt, pycuda, cuda


def install(monkeypatch: Any, knobs: Knobs | None = None) -> Knobs:
    """Put the double in sys.modules as `tensorrt`, `pycuda` and `pycuda.driver`."""
    k = knobs or Knobs()
    trt, pycuda, cuda = _modules(k)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda)
    return k
