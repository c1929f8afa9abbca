"""Wires the stages: capture -> inspect -> decide -> record -> outputs.

Threads: one capture thread (the source), N inspection workers (OpenCV, ONNX
Runtime and zxing-cpp release the GIL), the tracker's deadline thread, and one
recorder that commits verdicts before they are published on the bus.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.alarms import Alarms
from edge.batch_ids import new_batch_id
from edge.bus import Bus
from edge.capture.base import Source, open_source
from edge.config import AppConfig, Recipe
from edge.domain import BatchState, Frame, Item, Reason, ToolResult, Verdict
from edge.inspect.base import Services, Tool, ToolContext
from edge.inspect.registry import build_tools
from edge.judge import judge
from edge.line.tracking import Tracker
from edge.models.registry import model_roots
from edge.recorder import Recorder
from edge.stats import Stats
from edge.store.alarm_log import AlarmLog
from edge.store.db import Database
from edge.store.images import ImageStore

log = logging.getLogger(__name__)

_STOP = object()

__all__ = ["Pipeline", "Recorder"]


class Pipeline:
    """The inspection line. `start()`, then `wait()` (finite sources) or `stop()`."""

    def __init__(
        self,
        cfg: AppConfig,
        *,
        source: Source | None = None,
        db: Database | None = None,
        batch: BatchState | None = None,
        recipe: Recipe | None = None,
        services: Services | None = None,
        bus: Bus | None = None,
    ):
        self.cfg = cfg
        recipe = recipe or cfg.active_recipe()
        state = Path(cfg.records.state_dir)
        self.db = db or Database(state / "edge.db", cfg.records.synchronous)
        self.images = ImageStore(state / "images", fsync=cfg.records.synchronous == "FULL")
        self.bus = bus or Bus()
        self.stats = Stats()
        self.alarms = Alarms(self.bus)
        AlarmLog(self.db).subscribe(self.bus)
        self.services = services or Services()
        self.services.models_dir = model_roots(state, cfg.inference.models_dir)
        self.services.backend = cfg.inference.backend
        self.services.state_dir = state
        # recipe and its tools are swapped together, so a worker never mixes two recipes
        self._active: tuple[Recipe, list[Tool]] = (recipe, build_tools(recipe, self.services))
        self.source = source or open_source(cfg.source)
        if hasattr(self.source, "bind"):
            self.source.bind(self.alarms)  # a camera source raises its own alarms at once
        self.deadline_s = (self.recipe.deadline_ms or cfg.pipeline.deadline_ms) / 1000.0
        self.batch: BatchState | None = None
        self.recorder = Recorder(
            self.db,
            self.images,
            self.bus,
            self.stats,
            self.alarms,
            cfg.station.id,
            outbox=cfg.mqtt.enabled,
            sample_pass_every=cfg.records.sample_pass_every,
            keep_reject_images=cfg.records.keep_reject_images,
            records=cfg.records,
        )
        self.tracker = Tracker(self.recorder.submit)
        self._queue: queue.Queue[Any] = queue.Queue(cfg.pipeline.queue_size)
        self._seq = self.db.next_seq()
        self._seq_lock = threading.Lock()
        self._issued = 0
        self._slots = threading.Semaphore(cfg.pipeline.workers + 1)
        self._threads: list[threading.Thread] = []
        self._capture_done = threading.Event()
        self._stopping = threading.Event()
        self.last_frame_at = time.monotonic()
        self.deadline_hooks: list[Any] = []  # callables(item) -> float|None: earlier deadlines
        self._retired_tools: list[Tool] = []
        if batch is not None:
            self.start_batch(batch)
        else:
            open_b = self.db.open_batch()
            if open_b:
                self.batch = BatchState(
                    open_b["lot"], open_b["gtin"], open_b["expiry"], open_b["id"]
                )

    # ------------------------------------------------------------------ batches

    def start_batch(self, batch: BatchState, by: str | None = None, source: str = "local") -> str:
        if self.batch is not None and self.batch.id:
            self.db.end_batch(self.batch.id, by)
        batch_id = batch.id or new_batch_id(batch.lot)  # the lot may hold "/", "%", ".."
        self.db.start_batch(
            {
                "id": batch_id,
                "lot": batch.lot,
                "gtin": batch.gtin,
                "expiry": batch.expiry,
                "recipe": self.recipe.name,
                "started_at": time.time(),
                "started_by": by,
                "source": source,
            }
        )
        self.batch = BatchState(batch.lot, batch.gtin, batch.expiry, batch_id)
        self.bus.publish("batch", {"event": "started", "id": batch_id, "lot": batch.lot})
        return batch_id

    def stop_batch(self, by: str | None = None) -> str | None:
        if self.batch is None:
            return None
        bid = self.batch.id
        if bid:
            self.db.end_batch(bid, by)
        self.batch = None
        self.bus.publish("batch", {"event": "stopped", "id": bid})
        return bid

    def set_recipe(self, name: str) -> Recipe:
        """Switch the active recipe (MES change_recipe); its tools are built before the swap."""
        recipe = self.cfg.recipes[name]
        tools = build_tools(recipe, self.services)
        old = self.tools
        self._active = (recipe, tools)
        self.deadline_s = (recipe.deadline_ms or self.cfg.pipeline.deadline_ms) / 1000.0
        self._retired_tools.extend(old)  # a worker may still be using them: closed at stop()
        return recipe

    @property
    def recipe(self) -> Recipe:
        return self._active[0]

    @property
    def tools(self) -> list[Tool]:
        return self._active[1]

    @property
    def tool_names(self) -> list[str]:
        return [t.name for t in self._active[1]]

    # ------------------------------------------------------------------ run

    def start(self) -> None:
        # the stall clock and the rate start with capture, not when the pipeline was built:
        # the components (the web UI's own process) start in between and take seconds
        self.last_frame_at = self.stats.started = time.monotonic()
        self._threads = [threading.Thread(target=self._capture, name="capture", daemon=True)]
        for i in range(self.cfg.pipeline.workers):
            self._threads.append(
                threading.Thread(target=self._worker, name=f"inspect-{i}", daemon=True)
            )
        self._threads.append(threading.Thread(target=self._monitor, name="monitor", daemon=True))
        for t in self._threads:
            t.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a finite source is exhausted and every item is recorded."""
        end = None if timeout is None else time.monotonic() + timeout
        if not self._capture_done.wait(timeout):
            return False
        while self.tracker.in_flight() or not self.recorder.queue.empty():
            if end is not None and time.monotonic() > end:
                return False
            time.sleep(0.01)
        # the recorder may still hold the last group it took off the queue
        while self.recorder.recorded < self._issued:
            if end is not None and time.monotonic() > end:
                return False
            time.sleep(0.01)
        return True

    def stop(self) -> None:
        """Stop capture, let items in flight reach a verdict, record them, shut down."""
        self._stopping.set()
        self.source.stop()
        self._capture_done.wait(10)
        deadline = time.monotonic() + self.deadline_s + 5
        while self.tracker.in_flight() and time.monotonic() < deadline:
            time.sleep(0.01)
        for _ in range(self.cfg.pipeline.workers):
            self._queue.put(_STOP)
        for t in self._threads:
            t.join(5)
        self.tracker.close()
        self.recorder.close()
        for tool in self.tools + self._retired_tools:
            try:
                tool.close()
            except Exception:
                log.exception("closing tool %s", tool.name)
        self.bus.close()

    def run(self, timeout: float | None = None) -> dict[str, Any]:
        self.start()
        try:
            self.wait(timeout)
        finally:
            self.stop()
        return self.stats.snapshot()

    # ------------------------------------------------------------------ stages

    def _next_seq(self) -> int:
        with self._seq_lock:
            s = self._seq
            self._seq += 1
            self._issued += 1
            return s

    def new_item(self, frame: Frame) -> Item:
        seq = self._next_seq()
        deadline = frame.t_trigger + self.deadline_s
        batch, (recipe, tools) = self.batch, self._active  # fixed here, at the trigger
        item = Item(
            id=f"{self.cfg.station.id}-{seq:09d}",
            seq=seq,
            t_trigger=frame.t_trigger,
            deadline=deadline,
            wall_trigger=time.time() - (time.monotonic() - frame.t_trigger),
            encoder=frame.encoder,
            frame=frame,
            batch=batch.id if batch else None,
            recipe=recipe.name,
            at_trigger=(batch, recipe, tools),
        )
        for hook in self.deadline_hooks:
            d = hook(item)
            if d is not None and d < item.deadline:
                item.deadline = d
        return item

    def _frames(self):
        """Frames from the source; an unpaced source (offline replay) is read just in time,
        so a file's trigger time is when a worker can take it, not when the disk was fast."""
        frames = iter(self.source.frames())
        paced = getattr(self.source, "paced", True)
        while True:
            if not paced:
                self._slots.acquire()
            try:
                frame = next(frames)
            except StopIteration:
                return
            yield frame

    def _capture(self) -> None:
        self.last_frame_at = time.monotonic()
        try:
            for frame in self._frames():
                self.last_frame_at = time.monotonic()
                if self.alarms.is_active("CAMERA_STALL"):
                    self.alarms.clear("CAMERA_STALL")
                item = self.new_item(frame)
                self.tracker.register(item)
                if frame.image is None or frame.error:
                    reason = frame.reason or Reason.IMAGE_ERROR.value
                    self.tracker.finalize(item, Verdict.REJECT, [reason])
                    self._slots.release()
                    continue
                try:
                    self._queue.put_nowait(item)
                except queue.Full:
                    # never drop silently: an uninspected item is a reject with a reason
                    self.tracker.finalize(item, Verdict.REJECT, [Reason.NOT_INSPECTED.value])
                    self._slots.release()
                if self._stopping.is_set():
                    break
        except Exception as exc:
            log.exception("capture source failed")
            self.alarms.raise_("CAMERA_FAULT", f"capture source failed: {exc}", "critical", True)
        finally:
            self._capture_done.set()

    def _monitor(self) -> None:
        stall = self.cfg.pipeline.stall_timeout_s
        while not self._capture_done.is_set():
            if time.monotonic() - self.last_frame_at > stall:
                self.alarms.raise_(
                    "CAMERA_STALL", f"no frame for more than {stall:g} s", "critical", True
                )
            self._capture_done.wait(min(stall / 4, 0.5))

    def _worker(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                self.inspect(item)
            finally:
                self._slots.release()

    def inspect(self, item: Item) -> None:
        image = item.frame.image if item.frame else None
        verdict, reasons, results = self.judge_item(image, item)
        self.tracker.finalize(item, verdict, reasons, results)

    def judge_item(
        self, image: np.ndarray | None, item: Item
    ) -> tuple[Verdict, list[str], list[ToolResult]]:
        """Judge one item's image (`edge.judge`) with the batch, recipe and tools of its
        trigger, never those current now. Never raises."""
        batch, recipe, tools = item.at_trigger or (self.batch, *self._active)
        ctx = ToolContext(
            item_id=item.id,
            seq=item.seq,
            deadline=item.deadline,
            batch=batch,
            now=item.wall_trigger,
        )
        return judge(recipe, tools, image, ctx, batch is not None or not recipe.require_batch)
