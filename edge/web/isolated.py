"""The web UI in its own process, so its requests never take the line's interpreter lock.

In one process, every HMI request holds the interpreter lock the inspection threads need
between their OpenCV / ONNX Runtime / zxing-cpp calls; 50 polling panels then show up in
the line's p99. Here the web server runs in a child process at a lower CPU priority and the
line process keeps only a small bridge:

* events (verdicts, alarms, PackML state, batches, jobs) and a state snapshot flow to the
  child over a pipe, from the bridge's own bus subscription (bounded: a slow web process
  drops HMI events, counted, and never stalls the line); at most a few frames per second
  carry their image, the rest only their view;
* the child's few commands (start or stop a batch, acknowledge an alarm, readiness and
  metrics for the probes) come back over a second pipe and run in the line process;
* both processes open the same SQLite files (WAL): users, audit trail, items, images.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from edge.alarms import Alarm
from edge.bus import Bus
from edge.domain import BatchState, Frame, Item
from edge.ops.priority import run_in_background

log = logging.getLogger(__name__)

TOPICS = ["verdict", "alarm", "state", "batch", "job"]
SNAPSHOT_EVERY_S = 0.25
FRAMES_PER_S = 5.0


# ----------------------------------------------------------------------------- line side


class IsolatedWeb:
    """Appliance component: starts the web process and serves its bridge."""

    name = "web"

    def __init__(self, appliance: Any):
        self.appliance = appliance
        self.pipeline = appliance.pipeline
        self.cfg = appliance.cfg.web
        ctx = mp.get_context("spawn")  # never fork a process that runs threads
        self._events_r, self._events_w = ctx.Pipe(duplex=False)
        self._rpc, child_rpc = ctx.Pipe(duplex=True)
        self._port_r, port_w = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(
            target=child_main,
            args=(
                appliance.cfg,  # pickled as it is: validated once, by the line
                self._events_r,
                child_rpc,
                port_w,
                (self.cfg.nice, self.cfg.sched_idle),
            ),
            name="edge-web",
            daemon=True,
        )
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._last_frame = 0.0
        self._recipe_sent: tuple[str, int] | None = None
        self.port: int | None = None
        self.error: str | None = None
        self.dropped = 0
        self.sub: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.cfg.host}:{self.port or self.cfg.port}"

    # -- lifecycle

    def start(self) -> None:
        self.proc.start()
        self._send(("snapshot", self._snapshot()))  # the first page the child serves is complete
        self._send_recipe()
        if self._port_r.poll(60):
            try:
                msg = self._port_r.recv()
            except (EOFError, OSError):  # the web process died before it said anything
                msg = f"web process exited with code {self.proc.exitcode}"
            if isinstance(msg, int):
                self.port = msg
                log.info("web UI on %s (own process %d)", self.url, self.proc.pid)
            else:
                self.error = str(msg)
        else:
            self.error = "web process did not start in 60 s"
        if self.error:
            log.error("web UI did not start: %s", self.error)
            return
        self.sub = self.pipeline.bus.subscribe(
            TOPICS, self._on_event, name="web-bridge", maxsize=2000
        )
        for target, name in ((self._push_snapshots, "web-snapshot"), (self._serve_rpc, "web-rpc")):
            threading.Thread(target=target, name=name, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        if self.proc.is_alive():
            self._send(None)
            self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)

    def status(self) -> dict[str, Any]:
        up = self.proc.is_alive() and self.port is not None
        dropped = self.sub.dropped if self.sub else 0
        return {"up": up, "url": self.url, "detail": self.error or "", "events_dropped": dropped}

    # -- events to the web process

    def _send(self, msg: Any) -> None:
        with self._send_lock:
            try:
                self._events_w.send(msg)
            except (OSError, ValueError) as exc:  # the web process is gone: the line goes on
                if self.error is None:
                    self.error = f"web process unreachable: {exc}"
                    log.error("%s", self.error)

    def _on_event(self, topic: str, ev: Any) -> None:
        if topic == "verdict":
            ev = self._slim(ev)
        self._send((topic, ev))

    def _slim(self, item: Item) -> Item:
        """The item without simulator truth, and without its image unless a frame is due."""
        now = time.monotonic()
        keep_image = now - self._last_frame >= 1.0 / FRAMES_PER_S
        if keep_image:
            self._last_frame = now
        f = item.frame
        frame = None
        if f is not None:
            frame = Frame(
                image=f.image if keep_image else None,
                t_trigger=f.t_trigger,
                encoder=f.encoder,
                source=f.source,
                name=f.name,
            )
        views = None
        if item.views is not None:  # the views side by side when a frame is due, else names
            views = {
                name: Frame(
                    image=v.image if keep_image else None,
                    t_trigger=v.t_trigger,
                    encoder=v.encoder,
                    source=v.source,
                    name=v.name,
                    error=v.error,
                    frame_id=v.frame_id,
                )
                for name, v in item.views.items()
            }
        return dataclasses.replace(item, frame=frame, views=views)

    def _snapshot(self) -> dict[str, Any]:
        p = self.pipeline
        b = p.batch
        return {
            "stats": p.stats.snapshot(),
            "batch": dataclasses.asdict(b) if b else None,
            "recipe": p.recipe.name,
            "stamp": dataclasses.asdict(p.stamp),  # the approved version the line runs
            "alarms": [a.to_dict() for a in p.alarms.active()],
            "history": [a.to_dict() for a in p.alarms.history()[-200:]],
        }

    def _send_recipe(self) -> None:
        """The recipe the line runs, whenever it changed (a changeover): the web process
        judges (shadow mode) and shows with it, never the config file's copy."""
        p = self.pipeline
        key = (p.stamp.name, p.stamp.version)
        if key != self._recipe_sent:
            self._recipe_sent = key
            self._send(("recipe", (key, p.recipe)))

    def _push_snapshots(self) -> None:
        while not self._stop.wait(SNAPSHOT_EVERY_S):
            if self.proc.is_alive():
                self._send_recipe()
                self._send(("snapshot", self._snapshot()))

    # -- commands from the web process

    def _serve_rpc(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._rpc.poll(0.5):
                    continue
                method, kwargs = self._rpc.recv()
            except (EOFError, OSError):
                return
            try:
                reply: tuple[str, Any] = ("ok", self._call(method, kwargs))
            except Exception as exc:
                reply = ("error", f"{type(exc).__name__}: {exc}")
            self._send_recipe()  # before the reply: the page after a changeover shows it
            try:
                self._rpc.send(reply)
            except (OSError, ValueError):
                return

    def _call(self, method: str, kw: dict[str, Any]) -> Any:
        p = self.pipeline
        if method == "start_batch":
            bid = p.start_batch(BatchState(**kw["batch"]), by=kw["by"], source=kw["source"])
        elif method == "stop_batch":
            bid = p.stop_batch(by=kw["by"])
        elif method == "changeover":
            from edge.recipes.changeover import ChangeoverRefused

            try:
                bid = self.appliance.changeover.start(**kw)
            except ChangeoverRefused as exc:  # the code crosses the pipe in the message
                raise ChangeoverRefused(exc.code, f"{exc.code}: {exc}") from None
        elif method == "ack":
            a = p.alarms.ack(kw["code"], kw["user"])
            return {"alarm": a.to_dict() if a else None, "snapshot": self._snapshot()}
        elif method == "readiness":
            from edge.ops import health

            return health.readiness(self.appliance)
        elif method == "liveness":
            from edge.ops import health

            return health.liveness(self.appliance)
        elif method == "metrics":
            from edge.ops.metrics import Metrics

            return Metrics.of(self.appliance).render()
        else:
            raise ValueError(f"unknown method {method!r}")
        return {"id": bid, "snapshot": self._snapshot()}


def build(app: Any) -> Any:
    """The web UI component: in its own process unless `web.isolated` is off."""
    cfg = app.cfg.web
    if not cfg.enabled:
        return None
    if cfg.isolated:
        return IsolatedWeb(app)
    from edge.web.component import WebComponent

    return WebComponent(app)


# ----------------------------------------------------------------------------- web side


class _Remote:
    """Calls into the line process; one call at a time on the pipe."""

    def __init__(self, conn: Any):
        self.conn = conn
        self.lock = threading.Lock()

    def call(self, method: str, timeout_s: float = 30.0, **kw: Any) -> Any:
        with self.lock:
            self.conn.send((method, kw))
            if not self.conn.poll(timeout_s):
                raise TimeoutError(f"the line did not answer {method} in {timeout_s:g} s")
            status, value = self.conn.recv()
        if status != "ok":
            if str(value).startswith("OperationalError: "):  # the line's database refused a
                raise sqlite3.OperationalError(str(value).split(": ", 1)[1])  # write: a 503
            if str(value).startswith("ChallengeFailed: "):  # the batch was refused: a 409
                from edge.recipes.challenge import ChallengeFailed

                raise ChallengeFailed(str(value).split(": ", 1)[1], {})
            if str(value).startswith("ChangeoverRefused: "):
                from edge.recipes.changeover import ChangeoverRefused

                _, code, message = str(value).split(": ", 2)
                raise ChangeoverRefused(code, message)
            raise RuntimeError(value)
        return value


class RemoteStats:
    def __init__(self, pipeline: RemotePipeline):
        self.p = pipeline

    def snapshot(self) -> dict[str, Any]:
        return dict(self.p.snap.get("stats") or {})


def _alarm(d: dict[str, Any]) -> Alarm:
    fields = {f.name for f in dataclasses.fields(Alarm)}
    return Alarm(**{k: v for k, v in d.items() if k in fields})


class RemoteAlarms:
    def __init__(self, pipeline: RemotePipeline):
        self.p = pipeline

    def active(self) -> list[Alarm]:
        return [_alarm(a) for a in self.p.snap.get("alarms", [])]

    def history(self) -> list[Alarm]:
        return [_alarm(a) for a in self.p.snap.get("history", [])]

    def ack(self, code: str, user: str) -> Alarm | None:
        r = self.p.remote.call("ack", code=code, user=user)
        self.p.snap = r["snapshot"]
        return _alarm(r["alarm"]) if r["alarm"] else None


class RemotePipeline:
    """What the web code uses of the pipeline, served from the line process."""

    def __init__(self, cfg: Any, remote: _Remote):
        from edge.store.db import Database
        from edge.store.images import ImageStore

        state = Path(cfg.records.state_dir)
        self.cfg = cfg
        self.remote = remote
        self.db = Database(state / "edge.db", cfg.records.synchronous)
        self.images = ImageStore(state / "images")
        self.bus = Bus()
        self.snap: dict[str, Any] = {}
        self._recipe: tuple[tuple[str, int], Any] | None = None
        self.stats = RemoteStats(self)
        self.alarms = RemoteAlarms(self)

    @property
    def batch(self) -> BatchState | None:
        b = self.snap.get("batch")
        return BatchState(**b) if b else None

    @property
    def stamp(self) -> Any:
        """Name, version and hash of the recipe the line runs (from the line's snapshot)."""
        from edge.recipes.book import Stamp

        st = self.snap.get("stamp")
        return Stamp(**st) if st else None

    @property
    def recipe(self) -> Any:
        """The recipe the line really runs: the approved version from the database that the
        line's snapshot names, not the config file's copy (which may be an unapproved draft,
        or not hold a recipe a changeover switched to)."""
        st = self.stamp
        cached = self._recipe
        if st is None or (cached is not None and cached[0] == (st.name, st.version)):
            return cached[1] if cached else self.cfg.active_recipe()
        # the line sends each recipe it switches to; until it arrives, the database's copy
        from edge.recipes.book import RecipeBook

        return RecipeBook(self.db).version(st.name, st.version)

    def start_batch(self, batch: BatchState, by: str | None = None, source: str = "local") -> str:
        r = self.remote.call("start_batch", batch=dataclasses.asdict(batch), by=by, source=source)
        self.snap = r["snapshot"]
        return r["id"]

    def stop_batch(self, by: str | None = None) -> str | None:
        r = self.remote.call("stop_batch", by=by)
        self.snap = r["snapshot"]
        return r["id"]

    def pump(self, events: Any, on_end: Any) -> None:
        """Events from the line onto the local bus the hub listens to, until the line stops."""
        while True:
            try:
                msg = events.recv()
            except (EOFError, OSError):
                msg = None
            if msg is None:  # the line is stopping (or gone): so is its web UI
                on_end()
                return
            topic, payload = msg
            if topic == "snapshot":
                self.snap = payload
            elif topic == "recipe":
                self._recipe = payload  # ((name, version), Recipe) as the line runs it
            else:
                self.bus.publish(topic, payload)


class RemoteChangeover:
    """The line's changeover (product by GTIN, challenge, batch start), run in the line."""

    def __init__(self, pipeline: RemotePipeline):
        self.p = pipeline

    def start(
        self, gtin: str, lot: str, expiry: str, by: str | None = None, source: str = "hmi"
    ) -> str:
        r = self.p.remote.call(  # waits for items in flight and the challenge: minutes at most
            "changeover", timeout_s=300, gtin=gtin, lot=lot, expiry=expiry, by=by, source=source
        )
        self.p.snap = r["snapshot"]
        return r["id"]


class RemoteAppliance:
    def __init__(self, cfg: Any, remote: _Remote):
        from edge.store.audit import AuditTrail

        self.cfg = cfg
        self.remote = remote
        self.pipeline = RemotePipeline(cfg, remote)
        self.changeover = RemoteChangeover(self.pipeline)
        self.audit = AuditTrail(self.pipeline.db)


def child_main(cfg: Any, events: Any, rpc: Any, port_w: Any, priority: tuple[int, bool]) -> None:
    """Entry of the web process."""
    from edge.ops.logs import configure
    from edge.web.component import make_server
    from edge.web.remote_ops import ops_router
    from edge.web.server import create_app

    configure(logging.WARNING)
    run_in_background(*priority)
    remote = _Remote(rpc)
    appliance = RemoteAppliance(cfg, remote)
    first = events.recv()  # the first snapshot, so the first page is complete
    if first and first[0] == "snapshot":
        appliance.pipeline.snap = first[1]
    try:
        app = create_app(appliance, ops=ops_router(remote))
    except Exception as exc:  # e.g. an unreadable session key: said to the line, not a hang
        port_w.send(f"{type(exc).__name__}: {exc}")
        return
    server = make_server(app, cfg.web.host, cfg.web.port, cfg.web.trusted_proxies)

    def announce() -> None:
        end = time.monotonic() + 30
        while not server.started and time.monotonic() < end:
            time.sleep(0.02)
        try:
            port_w.send(int(server.servers[0].sockets[0].getsockname()[1]))
        except (AttributeError, IndexError):
            port_w.send("the web server did not open its port")

    def end() -> None:
        server.should_exit = True

    threading.Thread(target=announce, daemon=True).start()
    threading.Thread(target=appliance.pipeline.pump, args=(events, end), daemon=True).start()
    try:
        server.run()
    finally:
        web = app.state.ctx
        web.hub.close()
        if web.jobs is not None:
            web.jobs.close()
