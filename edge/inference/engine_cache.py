"""The TensorRT engine cache: one engine file per (runtime, GPU, model, precision), kept
under the state directory.

An engine is not portable: it is valid for one TensorRT version on one GPU model, and
TensorRT picks kernels by compute capability, SM count and memory size, so all of those
are in the key, with the SHA-256 of the ONNX file it was built from. Beside each engine a
sidecar JSON (the meta) records the same facts and the engine's own SHA-256; a load
compares both, so a truncated, edited or mismatched engine is found before TensorRT
deserialises it.

Where: under the state directory (`records.state_dir`/engines by default), never beside
the models: the installer puts the models under /opt, which the service unit makes
read-only (`ProtectSystem=strict`). Writes go to a unique temporary name in the same
folder, are fsynced and renamed, the engine before its sidecar (the sidecar is the commit
mark: an engine without one is not used), so a power cut or a second writer never leaves
a half-written engine under the real name. A build holds an exclusive lock file, so
`edge model build-engine` and the service never build the same engine twice at once.
Every OSError becomes a BackendError that says which folder and what to do.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge.inference.base import BackendError


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What TensorRT's kernel choice depends on, as CUDA reports it."""

    name: str
    compute_capability: tuple[int, int]
    sm_count: int
    total_memory: int  # bytes

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["compute_capability"] = list(self.compute_capability)
        return d


def engine_cache_key(
    trt_version: str, device: DeviceInfo, model_sha256: str, precision: str
) -> str:
    """File stem of a cached engine. Any change of runtime, GPU, model or precision is a new key.

    Readable parts (TensorRT version, GPU name, compute capability, precision) and a digest
    of everything, so two GPUs of one name but another SM count or memory size differ.
    """
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", device.name).strip("-").lower()[:32] or "gpu"
    ver = re.sub(r"[^0-9.]+", "", trt_version) or "unknown"
    sm = "".join(str(v) for v in device.compute_capability)
    ident = json.dumps(
        {
            "tensorrt": trt_version,
            "device": device.as_dict(),
            "model_sha256": model_sha256,
            "precision": precision,
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
    prec = re.sub(r"[^a-z0-9]+", "", precision.lower()) or "default"
    return f"trt{ver}-{gpu}-sm{sm}-{prec}-{digest}"


def engine_meta(
    trt_version: str, device: DeviceInfo, model_sha256: str, precision: str
) -> dict[str, Any]:
    """What an engine must have been built for to be used here (its sidecar holds the same)."""
    return {
        "tensorrt": trt_version,
        **{f"gpu_{k}": v for k, v in device.as_dict().items()},
        "model_sha256": model_sha256,
        "precision": precision,
    }


def check_engine_meta(found: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """Differences between a cached engine's sidecar and this runtime (empty: usable)."""
    return [
        f"{k}: engine has {found.get(k)!r}, this runtime needs {v!r}"
        for k, v in expected.items()
        if found.get(k) != v
    ]


class CacheMismatch(BackendError):
    """A cached engine or its sidecar that must not be used (corrupt, or built for another
    runtime, GPU or model). The caller deletes it and builds again, once."""


def _fail(action: str, path: Path, exc: OSError) -> BackendError:
    return BackendError(
        f"cannot {action} {path}: {exc.strerror or exc}. The engine cache must be a folder the "
        "service user can write, under the state directory (default <records.state_dir>/engines; "
        "set inference.backend.cache_dir): check that it exists, is writable and has free space"
    )


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems refuse to open a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """`data` under `path`, all or nothing: unique temp name, fsync, rename, fsync the folder."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


class EngineCache:
    """One folder of engines and sidecars."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def paths(self, key: str) -> tuple[Path, Path]:
        return self.folder / f"{key}.engine", self.folder / f"{key}.json"

    def ensure(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _fail("create the engine cache folder", self.folder, exc) from None
        if not os.access(self.folder, os.W_OK | os.X_OK):
            raise _fail(
                "write to the engine cache folder", self.folder, PermissionError("not writable")
            )

    def load(self, key: str, expected: dict[str, Any]) -> bytes | None:
        """The cached engine for `key`, None when there is none; CacheMismatch when there is
        one that must not be used."""
        engine, meta = self.paths(key)
        try:
            if not meta.is_file():
                return None  # no commit mark: an engine alone is a build that never finished
            try:
                found = json.loads(meta.read_text())
                if not isinstance(found, dict):
                    raise ValueError("not a JSON object")
            except (ValueError, UnicodeDecodeError) as exc:
                raise CacheMismatch(f"engine sidecar {meta} is unreadable: {exc}") from None
            diffs = check_engine_meta(found, expected)
            if diffs:
                raise CacheMismatch(f"cached engine {engine} does not fit: " + "; ".join(diffs))
            if not engine.is_file():
                raise CacheMismatch(f"engine {engine} named by its sidecar is missing")
            data = engine.read_bytes()
        except OSError as exc:
            raise _fail("read the cached engine", engine, exc) from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != found.get("engine_sha256"):
            raise CacheMismatch(
                f"engine {engine} is corrupt: SHA-256 {digest[:12]}… differs from its sidecar's "
                f"{str(found.get('engine_sha256'))[:12]}…"
            )
        return data

    def store(self, key: str, data: bytes, meta: dict[str, Any]) -> Path:
        """Write an engine and then its sidecar (the commit mark), each atomically."""
        self.ensure()
        engine, meta_path = self.paths(key)
        record = {**meta, "engine_sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        try:
            write_atomic(engine, data)
            write_atomic(meta_path, json.dumps(record, indent=2).encode())
        except OSError as exc:
            raise _fail("write the engine", engine, exc) from None
        return engine

    def discard(self, key: str) -> None:
        """Delete an engine and its sidecar (sidecar first: no engine is left marked usable)."""
        engine, meta = self.paths(key)
        for p in (meta, engine):
            try:
                p.unlink(missing_ok=True)
            except OSError as exc:
                raise _fail("delete the unusable cached engine", p, exc) from None

    @contextlib.contextmanager
    def build_lock(self, key: str) -> Iterator[None]:
        """Exclusive across processes (flock): one build of one engine at a time."""
        self.ensure()
        lock = self.folder / f"{key}.lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o640)
        except OSError as exc:
            raise _fail("create the build lock", lock, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def default_cache_dir() -> Path:
    """<state dir>/engines: $EDGE_STATE_DIR (set by the service unit), else ./var."""
    return Path(os.environ.get("EDGE_STATE_DIR", "var")) / "engines"
