"""TensorRT backend with pycuda, for Jetson-class devices.

- TensorRT >= 10: the engine is built from the INT8 Q/DQ ONNX (explicit quantisation;
  the implicit calibrators are deprecated since 10.1), with the INT8 and FP16 flags.
- TensorRT 8.x (JetPack 5): built from the FP32 ONNX with the INT8 flag and an entropy
  calibrator (IInt8EntropyCalibrator2) over the calibration image set.
- Engines are not portable: they are cached keyed by TensorRT version + GPU name +
  model SHA-256 (+ precision flags), with a sidecar JSON that is checked on load.
- Inference runs on a CUDA stream with pycuda device buffers: the tensor-address API
  (`set_tensor_address` + `execute_async_v3`) where present (TensorRT >= 8.5), the
  bindings API (`execute_async_v2`) on older 8.x.

Everything that does not need a GPU (cache keys, buffer planning from the engine's
tensor shapes, the checks on the Q/DQ model) is plain Python, tested on the CPU.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edge.inference import yolo
from edge.inference.base import Backend, BackendError

# --------------------------------------------------------------------------- pure helpers


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def engine_cache_key(
    trt_version: str, gpu_name: str, model_sha256: str, int8: bool = True, fp16: bool = True
) -> str:
    """File stem of a cached engine. Any change of runtime, GPU, model or flags is a new key."""
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-").lower() or "gpu"
    ver = re.sub(r"[^0-9.]+", "", trt_version) or "unknown"
    flags = "".join(f for f, on in (("i8", int8), ("f16", fp16)) if on) or "f32"
    return f"trt{ver}-{gpu}-{flags}-{model_sha256[:16]}"


def engine_meta(
    trt_version: str, gpu_name: str, model_sha256: str, int8: bool, fp16: bool
) -> dict[str, Any]:
    return {
        "tensorrt": trt_version,
        "gpu": gpu_name,
        "model_sha256": model_sha256,
        "int8": bool(int8),
        "fp16": bool(fp16),
    }


def check_engine_meta(found: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """Differences between a cached engine's sidecar and this runtime (empty: usable)."""
    return [
        f"{k}: engine has {found.get(k)!r}, this runtime needs {v!r}"
        for k, v in expected.items()
        if found.get(k) != v
    ]


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


def check_qdq_model(path: str | Path, min_opset: int = 17) -> dict[str, Any]:
    """What TensorRT's explicit quantisation needs of the ONNX it is fed.

    Q/DQ pairs present, static input shapes, opset >= 17, symmetric (zero-point 0)
    int8 quantisation. Raises BackendError listing every problem.
    """
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise BackendError(f"cannot read ONNX {path}: {exc}") from exc
    problems = []
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < min_opset:
        problems.append(f"opset {opset} < {min_opset}")
    counts: dict[str, int] = {}
    for n in model.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    nq, ndq = counts.get("QuantizeLinear", 0), counts.get("DequantizeLinear", 0)
    if nq == 0 or ndq == 0:
        problems.append(f"no Q/DQ nodes (QuantizeLinear {nq}, DequantizeLinear {ndq})")
    shapes = {}
    inits = {i.name for i in model.graph.initializer}
    for i in model.graph.input:
        if i.name in inits:
            continue
        dims = [
            d.dim_value if d.HasField("dim_value") else -1 for d in i.type.tensor_type.shape.dim
        ]
        shapes[i.name] = dims
        if any(d <= 0 for d in dims):
            problems.append(f"input {i.name!r} has a dynamic shape {dims}")
    init_by_name = {i.name: i for i in model.graph.initializer}
    asym = 0
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) >= 3:
            zp = init_by_name.get(n.input[2])
            if zp is not None and np.any(numpy_helper.to_array(zp) != 0):
                asym += 1
    if asym:
        problems.append(f"{asym} Q/DQ nodes with non-zero zero-points (TensorRT needs symmetric)")
    if problems:
        raise BackendError(f"{path} is not a TensorRT-ready Q/DQ model: " + "; ".join(problems))
    return {"opset": opset, "quantize_linear": nq, "dequantize_linear": ndq, "inputs": shapes}


def calibration_batches(calibration_dir: str | Path, input_size: int, limit: int = 256):
    """Letterboxed 1x3xSxS tensors from a calibration image set (sorted, deterministic)."""
    import cv2

    files = sorted(
        p
        for p in Path(calibration_dir).rglob("*")
        if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp")
    )[:limit]
    if not files:
        raise BackendError(f"no calibration images under {calibration_dir}")
    for p in files:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise BackendError(f"unreadable calibration image {p}")
        yield yolo.letterbox(img, input_size)[0]


# --------------------------------------------------------------------------- runtime


def _import_runtime():
    try:
        import pycuda.driver as cuda
        import tensorrt as trt
    except ImportError as exc:
        raise BackendError(
            "the TensorRT backend needs the `tensorrt` and `pycuda` Python packages and an "
            f"NVIDIA GPU (JetPack on Jetson); not available here: {exc}. "
            "Use `type: onnx` or install TensorRT."
        ) from exc
    return trt, cuda


def _trt_major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


def _make_entropy_calibrator(trt, cuda, calibration_dir: Path, input_size: int, cache: Path):
    """An IInt8EntropyCalibrator2 over the calibration set (TensorRT 8.x implicit INT8)."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = calibration_batches(calibration_dir, input_size)
            self.device = cuda.mem_alloc(3 * input_size * input_size * 4)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names):
            try:
                batch = next(self.batches)
            except StopIteration:
                return None
            cuda.memcpy_htod(self.device, np.ascontiguousarray(batch))
            return [int(self.device)]

        def read_calibration_cache(self):
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data) -> None:
            cache.write_bytes(bytes(data))

    return EntropyCalibrator()


class TensorRTBackend(Backend):
    type_key: ClassVar[str] = "tensorrt"

    def _load(self) -> None:
        trt, cuda = _import_runtime()
        self.trt, self.cuda = trt, cuda
        cuda.init()
        if cuda.Device.count() < 1:
            raise BackendError("no CUDA device found for the TensorRT backend")
        dev = cuda.Device(0)
        self.cuda_ctx = dev.retain_primary_context()
        self.cuda_ctx.push()
        try:
            self.gpu_name = dev.name()
            self.logger = trt.Logger(trt.Logger.WARNING)
            engine_bytes = self._engine_bytes()
            runtime = trt.Runtime(self.logger)
            self.engine = runtime.deserialize_cuda_engine(engine_bytes)
            if self.engine is None:
                raise BackendError(
                    f"TensorRT {trt.__version__} could not deserialize the engine for "
                    f"{self.model_path} (built for another TensorRT or GPU?)"
                )
            self.context = self.engine.create_execution_context()
            self.plan = plan_buffers(self._tensor_specs(), self.input_size, len(self.class_names))
            self.stream = cuda.Stream()
            self.host = {t.name: cuda.pagelocked_empty(t.shape, t.dtype) for t in self.plan.tensors}
            self.device = {t.name: cuda.mem_alloc(self.plan.nbytes(t)) for t in self.plan.tensors}
            self.tensor_api = hasattr(self.context, "execute_async_v3")
            if self.tensor_api:
                for t in self.plan.tensors:
                    self.context.set_tensor_address(t.name, int(self.device[t.name]))
            else:
                self.bindings = [0] * self.engine.num_bindings
                for t in self.plan.tensors:
                    self.bindings[self.engine.get_binding_index(t.name)] = int(self.device[t.name])
        finally:
            self.cuda_ctx.pop()
        self.providers = [f"TensorRT {trt.__version__} on {self.gpu_name}"]
        self._lock = threading.Lock()  # one execution context: one inference at a time

    # -- engine preparation
    def _precision(self) -> tuple[bool, bool]:
        return bool(getattr(self.config, "int8", True)), bool(getattr(self.config, "fp16", True))

    def _engine_bytes(self) -> bytes:
        trt = self.trt
        int8, fp16 = self._precision()
        source = self._source_model(int8)
        model_sha = sha256_file(source)
        key = engine_cache_key(trt.__version__, self.gpu_name, model_sha, int8, fp16)
        cache_dir = Path(
            getattr(self.config, "cache_dir", None) or self.model_path.parent / "engines"
        )
        cache_dir.mkdir(parents=True, exist_ok=True)
        engine_path, meta_path = cache_dir / f"{key}.engine", cache_dir / f"{key}.json"
        expected = engine_meta(trt.__version__, self.gpu_name, model_sha, int8, fp16)
        if engine_path.is_file() and meta_path.is_file():
            diffs = check_engine_meta(json.loads(meta_path.read_text()), expected)
            if diffs:
                raise BackendError(f"cached engine {engine_path} does not fit: " + "; ".join(diffs))
            return engine_path.read_bytes()
        data = self._build_engine(source, int8, fp16)
        tmp = engine_path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(engine_path)
        meta_path.write_text(json.dumps(expected, indent=2))
        return data

    def _source_model(self, int8: bool) -> Path:
        """TensorRT >= 10 builds from the Q/DQ ONNX; 8.x builds from FP32 with a calibrator."""
        path = Path(self.model_path)
        if not int8:
            return path
        if _trt_major(self.trt) >= 10:
            check_qdq_model(path)
            return path
        fp32 = path.with_name("model.onnx")
        if not fp32.is_file():
            raise BackendError(f"TensorRT 8.x INT8 needs the FP32 model beside {path}: {fp32}")
        return fp32

    def _build_engine(self, source: Path, int8: bool, fp16: bool) -> bytes:
        trt = self.trt
        builder = trt.Builder(self.logger)
        flags = 0
        if _trt_major(trt) < 10:
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(source.read_bytes()):
            errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise BackendError(f"TensorRT cannot parse {source}: " + "; ".join(errs))
        config = builder.create_builder_config()
        workspace = int(getattr(self.config, "workspace_mb", 1024)) << 20
        if hasattr(config, "set_memory_pool_limit"):
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
        else:  # TensorRT < 8.4
            config.max_workspace_size = workspace
        if fp16 and builder.platform_has_fast_fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        if int8:
            config.set_flag(trt.BuilderFlag.INT8)
            if _trt_major(trt) < 10:
                calib_dir = Path(
                    getattr(self.config, "calibration_dir", None) or "calibration/sim-v1"
                )
                config.int8_calibrator = _make_entropy_calibrator(
                    trt, self.cuda, calib_dir, self.input_size, source.with_suffix(".calib")
                )
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BackendError(f"TensorRT failed to build an engine from {source}")
        return bytes(serialized)

    def _tensor_specs(self) -> list[TensorSpec]:
        trt, e = self.trt, self.engine
        specs = []
        if hasattr(e, "num_io_tensors"):
            for i in range(e.num_io_tensors):
                name = e.get_tensor_name(i)
                specs.append(
                    TensorSpec(
                        name=name,
                        is_input=e.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                        shape=tuple(e.get_tensor_shape(name)),
                        dtype=np.dtype(trt.nptype(e.get_tensor_dtype(name))),
                    )
                )
        else:  # TensorRT < 8.5
            for i in range(e.num_bindings):
                specs.append(
                    TensorSpec(
                        name=e.get_binding_name(i),
                        is_input=e.binding_is_input(i),
                        shape=tuple(e.get_binding_shape(i)),
                        dtype=np.dtype(trt.nptype(e.get_binding_dtype(i))),
                    )
                )
        return specs

    # -- inference
    def run(self, tensor: np.ndarray) -> np.ndarray:
        cuda, plan = self.cuda, self.plan
        if tuple(tensor.shape) != tuple(plan.input.shape):
            raise BackendError(f"input tensor {tensor.shape} != engine input {plan.input.shape}")
        with self._lock:
            self.cuda_ctx.push()
            try:
                inp = self.host[plan.input.name]
                np.copyto(inp, tensor.astype(plan.input.dtype, copy=False))
                cuda.memcpy_htod_async(self.device[plan.input.name], inp, self.stream)
                if self.tensor_api:
                    ok = self.context.execute_async_v3(stream_handle=self.stream.handle)
                else:
                    ok = self.context.execute_async_v2(
                        bindings=self.bindings, stream_handle=self.stream.handle
                    )
                if not ok:
                    raise BackendError("TensorRT execution failed")
                out = plan.outputs[0]
                cuda.memcpy_dtoh_async(self.host[out.name], self.device[out.name], self.stream)
                self.stream.synchronize()
                return np.array(self.host[out.name], dtype=np.float32)
            finally:
                self.cuda_ctx.pop()

    def close(self) -> None:
        for buf in getattr(self, "device", {}).values():
            try:
                buf.free()
            except Exception:
                pass
        self.device = {}
        self.context = None
        self.engine = None
