"""Wires the stages: capture -> inspect -> decide -> record -> outputs.

Threads: one capture thread (the source), N inspection workers (OpenCV, ONNX
Runtime and zxing-cpp release the GIL), the tracker's deadline thread, and one
recorder that commits verdicts before they are published on the bus.
"""

from __future__ import annotations

import json
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
from edge.domain import BatchState, Frame, Item, Reason, ToolResult, Verdict, encoder_count
from edge.inspect.base import Services, Tool, ToolContext
from edge.inspect.registry import build_tools
from edge.judge import judge, judge_views
from edge.line.tracking import Tracker
from edge.line.views import ViewMatcher, missing_reasons, simulated_view
from edge.models.registry import model_roots
from edge.recipes.book import RecipeBook, Stamp
from edge.recorder import Recorder
from edge.stats import Stats
from edge.store.alarm_log import AlarmLog
from edge.store.audit import AuditTrail
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
        view_sources: dict[str, Source] | None = None,
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
        # the line runs only approved recipe versions; the config's recipes are the seed
        self.recipe_book = RecipeBook(self.db, AuditTrail(self.db))
        unaudited = self.recipe_book.seed({**cfg.recipes, recipe.name: recipe})
        if unaudited:  # never silent, never a reason to keep the line down
            log.error("recipe seed versions not audited: %s", "; ".join(unaudited))
            self.alarms.raise_("AUDIT_FAILED", unaudited[0], "major")
        recipe, stamp = self.recipe_book.resolve(recipe)
        # recipe, its tools and its stamp are swapped together, so a worker never mixes two
        self._active: tuple[Recipe, list[Tool], Stamp] = (
            recipe,
            build_tools(recipe, self.services),
            stamp,
        )
        #: run before a batch starts (the challenge test); raises to refuse the batch and
        #: returns what the batch record keeps of it (`{"challenge_id": ...}`)
        self.before_batch: Any = None
        #: exposure and gain per camera as the last changeover set them (read back), kept
        #: in each batch's record; None: the cameras run as configured
        self.camera_settings: dict[str, Any] | None = None
        #: a multi-view station's sources by view name (empty: the one `source`)
        self.view_sources: dict[str, Source] = {}
        if cfg.views:
            self.view_sources = view_sources or open_view_sources(cfg)
            source = source or next(iter(self.view_sources.values()))
        self.source = source or open_source(cfg.source)
        bound = self.view_sources.items() or [(None, self.source)]
        for view, src in bound:
            if not hasattr(src, "bind"):
                continue
            if view is None:
                src.bind(self.alarms)  # a camera source raises its own alarms at once
            else:
                src.bind(self.alarms, view)
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
        self.matcher: ViewMatcher | None = None
        if cfg.views:
            wait_ms = cfg.pipeline.view_wait_ms or 0.6 * self.deadline_s * 1000.0
            self.matcher = ViewMatcher(
                {v.name: v.encoder_offset for v in cfg.views},
                tolerance=cfg.pipeline.view_tolerance_counts,
                wait_s=wait_ms / 1000.0,
                new_item=self.new_item,
                on_open=self.tracker.register,
                on_complete=self._queue_views,
                on_missing=self._views_missing,
                on_unmatched=self._view_unmatched,
                on_resync=self._view_resync,
            )
            self._view_tools = {v.name: v.tools for v in cfg.views}
            self._partial: dict[str, dict[str, Any]] = {}
            self._partial_lock = threading.Lock()
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
        """Start a batch once `before_batch` (the challenge test) allowed it."""
        gate = self.before_batch(batch) if self.before_batch is not None else None
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
                "recipe_version": self.stamp.version,
                "started_at": time.time(),
                "started_by": by,
                "source": source,
                "challenge_id": (gate or {}).get("challenge_id"),
                "camera": json.dumps(self.camera_settings) if self.camera_settings else None,
            }
        )
        self.batch = BatchState(batch.lot, batch.gtin, batch.expiry, batch_id)
        for src in self.view_sources.values() or [self.source]:
            src.print_batch(self.batch)  # a simulated line's printer follows the batch
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
        """Switch to the approved version of a recipe (changeover, MES change_recipe); its
        tools are built before the swap. RecipeNotApproved when it has none."""
        recipe, stamp = self.recipe_book.approved(name)
        tools = build_tools(recipe, self.services)
        old = self.tools
        self._active = (recipe, tools, stamp)
        self.deadline_s = (recipe.deadline_ms or self.cfg.pipeline.deadline_ms) / 1000.0
        self._retired_tools.extend(old)  # a worker may still be using them: closed at stop()
        return recipe

    @property
    def active(self) -> tuple[Recipe, list[Tool], Stamp]:
        """Recipe, tools and stamp as one (what `restore` takes back)."""
        return self._active

    def restore(self, active: tuple[Recipe, list[Tool], Stamp]) -> None:
        """Back to what the line ran before a changeover that was refused after its recipe
        was loaded (the challenge failed): the running batch goes on as it was."""
        if active is self._active:
            return
        self._retired_tools.extend(self.tools)
        self._active = active
        recipe = active[0]
        self.deadline_s = (recipe.deadline_ms or self.cfg.pipeline.deadline_ms) / 1000.0

    @property
    def recipe(self) -> Recipe:
        return self._active[0]

    @property
    def stamp(self) -> Stamp:
        """Name, version and content hash of the recipe running now."""
        return self._active[2]

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
        if self.matcher is not None:
            self._threads = [
                threading.Thread(
                    target=self._capture_view, args=(name, src), name=f"capture-{name}", daemon=True
                )
                for name, src in self.view_sources.items()
            ]
            self._views_running = len(self._threads)
        else:
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
        for src in self.view_sources.values() or [self.source]:
            src.stop()
        self._capture_done.wait(10)
        deadline = time.monotonic() + self.deadline_s + 5
        while self.tracker.in_flight() and time.monotonic() < deadline:
            time.sleep(0.01)
        for _ in range(self.cfg.pipeline.workers):
            self._queue.put(_STOP)
        for t in self._threads:
            t.join(5)
        if self.matcher is not None:
            self.matcher.sweep(float("inf"))  # views that never came: MISSING_VIEW, recorded
            self.matcher.close()
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
        batch, (recipe, tools, stamp) = self.batch, self._active  # fixed here, at the trigger
        item = Item(
            id=f"{self.cfg.station.id}-{seq:09d}",
            seq=seq,
            t_trigger=frame.t_trigger,
            deadline=deadline,
            wall_trigger=time.time() - (time.monotonic() - frame.t_trigger),
            encoder=encoder_count(frame.encoder),
            frame=frame,
            batch=batch.id if batch else None,
            recipe=recipe.name,
            recipe_version=stamp.version,
            recipe_sha256=stamp.sha256,
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
                if type(item) is tuple:
                    self._inspect_view(*item)
                else:
                    self.inspect(item)
            finally:
                self._slots.release()

    def inspect(self, item: Item) -> None:
        image = item.frame.image if item.frame else None
        verdict, reasons, results = self.judge_item(image, item)
        self.tracker.finalize(item, verdict, reasons, results)

    def judge_item(
        self, image: np.ndarray | None, item: Item, view: str | None = None
    ) -> tuple[Verdict, list[str], list[ToolResult]]:
        """Judge one item's image (`edge.judge`) with the batch, recipe and tools of its
        trigger, never those current now; on a multi-view station, the tools of `view`.
        Never raises."""
        batch, recipe, tools = item.at_trigger or (self.batch, *self._active[:2])
        if view is not None and self._view_tools.get(view) is not None:
            wanted = self._view_tools[view]
            tools = [t for t in tools if t.name in wanted]  # type: ignore[operator]
        ctx = ToolContext(
            item_id=item.id,
            seq=item.seq,
            deadline=item.deadline,
            batch=batch,
            now=item.wall_trigger,
        )
        return judge(recipe, tools, image, ctx, batch is not None or not recipe.require_batch)

    # ------------------------------------------------------------------ several views

    def _capture_view(self, view: str, source: Source) -> None:
        """One view's camera: its frames join their items by encoder count (`ViewMatcher`)."""
        assert self.matcher is not None
        paced, n = getattr(source, "paced", True), 0
        ahead = max(1, -(-(self.cfg.pipeline.workers + 1) // len(self.cfg.views)))  # items
        try:
            for frame in source.frames():
                self.last_frame_at = time.monotonic()
                self.matcher.offer(view, frame)
                n += 1
                # an unpaced source (offline replay) reads just in time: no view runs more
                # than a few items ahead of the items already final, so an item's views come
                # together and no view waits out another's backlog
                while not paced and n - self._final_count() >= ahead:
                    if self._stopping.wait(0.002):
                        break
                if self._stopping.is_set():
                    break
        except Exception as exc:
            log.exception("capture source of view %s failed", view)
            self.alarms.raise_(
                "CAMERA_FAULT", f"view {view!r} capture failed: {exc}", "critical", True
            )
        finally:
            with self._seq_lock:
                self._views_running -= 1
                last = self._views_running == 0
            if last:
                self.matcher.sweep(float("inf"))  # no view will send more: open items miss one
                self._capture_done.set()

    def _final_count(self) -> int:
        with self._seq_lock:
            issued = self._issued
        return issued - self.tracker.in_flight()

    def _queue_views(self, item: Item) -> None:
        """Every view is in: one job per view for the workers, which may run them in parallel."""
        assert item.views is not None
        with self._partial_lock:
            self._partial[item.id] = {}
        for view in item.views:
            try:
                self._queue.put_nowait((item, view))
            except queue.Full:
                with self._partial_lock:
                    self._partial.pop(item.id, None)
                self.tracker.finalize(item, Verdict.REJECT, [Reason.NOT_INSPECTED.value])
                return

    def _inspect_view(self, item: Item, view: str) -> None:
        """Judge one view; the worker that judges an item's last view makes the one decision."""
        frame = item.views[view]  # type: ignore[index]
        if frame.image is None or frame.error:
            judged = (Verdict.REJECT, [frame.reason or Reason.IMAGE_ERROR.value], [])
        else:
            judged = self.judge_item(frame.image, item, view)
        with self._partial_lock:
            got = self._partial.get(item.id)
            if got is None:  # the item was already given up (queue full)
                return
            got[view] = judged
            if len(got) < len(item.views):  # type: ignore[arg-type]
                return
            del self._partial[item.id]
        ordered = {v: got[v] for v in item.views}  # type: ignore[union-attr]
        verdict, reasons, results = judge_views(ordered)
        self.tracker.finalize(item, verdict, reasons, results)

    def _views_missing(self, item: Item, missing: list[str]) -> None:
        reasons, results = missing_reasons(missing)
        self.tracker.finalize(item, Verdict.REJECT, reasons, results)

    def _view_unmatched(self, view: str, frame: Frame, why: str) -> None:
        log.warning("frame of view %s (encoder %d) matches no item: %s", view, frame.encoder, why)
        self.alarms.raise_(
            "VIEW_UNMATCHED",
            f"view {view!r}: a frame (encoder {frame.encoder}) matched no item ({why}); "
            f"{self.matcher.unmatched if self.matcher else 0} so far",
            "major",
            False,
        )

    def _view_resync(self, view: str, done: bool, note: str) -> None:
        """A view's camera came back with a new count: alarmed until its count is re-anchored
        (its frames are held out meanwhile, so its items reject MISSING_VIEW)."""
        code = f"VIEW_RESYNC_{view.upper()}"
        log.warning("view %s: %s", view, note)
        if done:
            if self.alarms.is_active(code):
                self.alarms.clear(code)
        else:
            self.alarms.raise_(code, f"view {view!r}: {note}", "major", False)


def open_view_sources(cfg: AppConfig) -> dict[str, Source]:
    """Each view's source: its own, or (a simulator station) the station's simulator showing
    this view of the item."""
    out: dict[str, Source] = {}
    for k, v in enumerate(cfg.views):
        src_cfg = v.source
        if src_cfg is None:
            src_cfg = simulated_view(cfg.source, cfg.views, k)
        out[v.name] = open_source(src_cfg)
    return out
