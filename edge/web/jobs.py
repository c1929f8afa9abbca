"""Long work (training, anomaly fits, evaluation, shadow runs, recipe previews) in separate,
low-priority processes.

The line shares the CPU with these jobs, never the interpreter: each job is a child
process (`python -m edge.web.jobrun KIND ...`) in its own session, at the lowest
scheduling priority, limited to one thread. It writes `progress.jsonl` (one JSON
object per step) and `job.log` in its own folder; the web server only reads those.
Cancel sends SIGTERM to the job's process group. One job runs at a time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from edge.store.safe_files import read_regular
from edge.web.errors import explain_failure

KINDS = ("train", "evaluate", "shadow", "anomaly_fit", "preview")


class JobError(RuntimeError):
    pass


def jobs_of(ctx: Any) -> Jobs:
    """The web context's job runner (`<state>/jobs`), made on first use."""
    if ctx.jobs is None:
        ctx.jobs = Jobs(ctx.state_dir / "jobs")
    return ctx.jobs


class Jobs:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def running(self) -> str | None:
        with self._lock:
            for jid, p in self._procs.items():
                if p.poll() is None:
                    return jid
        return None

    def start(self, kind: str, args: dict[str, Any], by: str) -> str:
        if kind not in KINDS:
            raise JobError(f"unknown job kind {kind!r}")
        busy = self.running()
        if busy:
            raise JobError(f"job {busy} is still running: wait for it or cancel it")
        jid = f"{kind}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
        d = self.root / jid
        d.mkdir(parents=True)
        meta = {"id": jid, "kind": kind, "args": args, "by": by, "started_utc": time.time()}
        (d / "job.json").write_text(json.dumps(meta, indent=1, default=str))
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        log = open(d / "job.log", "ab")  # noqa: SIM115 - owned by the child from here
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "edge.web.jobrun", kind, str(d)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
                cwd=os.getcwd(),
            )
        finally:
            log.close()
        with self._lock:
            self._procs[jid] = proc
        return jid

    def cancel(self, jid: str) -> bool:
        with self._lock:
            p = self._procs.get(jid)
        if p is None or p.poll() is not None:
            return False
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)
        self._append(jid, {"stage": "cancelled", "utc": time.time()})
        return True

    def _dir(self, jid: str) -> Path:
        d = self.root / jid
        if not jid or "/" in jid or jid.startswith(".") or d.is_symlink() or not d.is_dir():
            raise JobError(f"no job {jid!r}")
        return d

    def _append(self, jid: str, ev: dict[str, Any]) -> None:
        with open(self._dir(jid) / "progress.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(ev) + "\n")

    def status(self, jid: str, log_tail: int = 4000) -> dict[str, Any]:
        d = self._dir(jid)
        meta = json.loads(read_regular(d / "job.json", self.root) or b"{}")
        if not meta:
            raise JobError(f"no job {jid!r}")
        events = []
        prog = read_regular(d / "progress.jsonl", self.root)
        if prog is not None:
            for line in prog.decode("utf-8", "replace").splitlines():
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        with self._lock:
            p = self._procs.get(jid)
        rc = p.poll() if p is not None else None
        stages = [e.get("stage") for e in events]
        if "cancelled" in stages:
            state = "cancelled"
        elif "failed" in stages:
            state = "failed"
        elif "finished" in stages:
            state = "finished"
        elif p is not None and rc is None:
            state = "running"
        else:
            state = "failed" if rc not in (None, 0) else "ended"
        epochs = [e for e in events if e.get("stage") == "epoch"]
        log = ""
        if log_tail and (data := read_regular(d / "job.log", self.root, tail=log_tail)):
            log = data.decode("utf-8", "replace")
        result = next((e for e in reversed(events) if e.get("stage") == "finished"), None)
        error = next((e.get("error") for e in reversed(events) if e.get("stage") == "failed"), None)
        return {
            **meta,
            "state": state,
            "returncode": rc,
            "pid": p.pid if p is not None else None,  # leads its own process group
            "epoch": epochs[-1] if epochs else None,
            "epochs": epochs,
            "result": result,
            "error": error,
            "explanation": explain_failure(error) if state == "failed" else None,
            "log": log,
        }

    def list(self) -> list[dict[str, Any]]:
        out = []
        for d in sorted(self.root.iterdir(), reverse=True):
            if (d / "job.json").is_file():
                try:
                    s = self.status(d.name, log_tail=0)
                except Exception:
                    continue
                s.pop("epochs", None)
                out.append(s)
        return out[:20]

    def close(self) -> None:
        """The appliance stops: jobs do not outlive it."""
        for jid in list(self._procs):
            self.cancel(jid)
