"""A camera that comes back with a new count: the station recovers, never judging a frame for the
wrong item.

A hardware-triggered camera that was reopened missed the encoder's pulses while it was away,
so its counts no longer line up with the other views' (`Frame.count_epoch` says so). Its
frames are held out until two in a row, each taken at the same moment as one frame of another
view, agree on how far its count is off; the items in flight across the gap and the frames
used to anchor stay REJECT MISSING_VIEW for that view; after that the line passes again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from edge.capture.base import Source
from edge.config import parse_config
from edge.domain import Frame, Reason, Verdict
from edge.line.views import _Anchors
from edge.pipeline import Pipeline

from fake_tools import grey

PITCH = 800  # encoder counts between two items
DT = 0.1  # seconds between two items (600 items/min)


class Camera(Source):
    """A triggered camera: (item number, its count, grey level, count epoch) at item x DT.

    The frame's trigger time is the scheduled one (the camera's), whatever this machine's load;
    its name says which item it really shows."""

    def __init__(self, name: str, script: list[tuple[int, int, int, int]], lag: float = 0.0):
        super().__init__(cfg=None)
        self.name, self.script, self.lag = name, script, lag

    def frames(self) -> Iterator[Frame]:
        t0 = time.monotonic() + 0.05
        for item, count, level, epoch in self.script:
            at = t0 + item * DT + self.lag
            if self.wait(max(0.0, at - time.monotonic())):
                return
            yield Frame(
                image=grey(level),
                t_trigger=at,
                encoder=count,
                source=self.name,
                name=f"{self.name}-item{item}",
                count_epoch=epoch,
            )


def station(tmp_path, cams):
    cfg = parse_config(
        {
            "records": {"state_dir": str(tmp_path), "sample_pass_every": 0},
            "pipeline": {
                "workers": 2,
                "deadline_ms": 1500,
                "view_wait_ms": 250,
                "view_tolerance_counts": 0,
            },
            "recipe": "t",
            "recipes": {
                "t": {
                    "name": "t",
                    "tools": [{"type": "behaviour", "find": "CRACK", "find_when_mean_below": 60}],
                }
            },
            "views": [{"name": "a"}, {"name": "b"}],
        }
    )
    return Pipeline(cfg, view_sources=cams)


def run(p: Pipeline):
    got = []
    p.bus.subscribe_sync("verdict", lambda _t, item: got.append(item))
    p.run(timeout=60)
    return sorted(got, key=lambda i: i.encoder)


def test_a_camera_back_with_its_count_restarted_is_re_anchored_and_the_line_recovers(tmp_path):
    n = 30
    a = [(k, k * PITCH, 200, 0) for k in range(n)]
    # camera b (its frames come 10 ms after a's) is pulled away after item 5 and is back for
    # item 9, counting from 0 again; what it shows of item 20 is a crack
    b = [(k, k * PITCH, 200, 0) for k in range(6)]
    b += [(k, (k - 9) * PITCH, 20 if k == 20 else 200, 1) for k in range(9, n)]
    p = station(tmp_path, {"a": Camera("a", a), "b": Camera("b", b, lag=0.01)})
    alarms = []
    p.bus.subscribe_sync("alarm", lambda _t, ev: alarms.append(ev))
    items = run(p)

    assert [i.encoder // PITCH for i in items] == list(range(n)), "every item, once"
    for i in items:  # never a frame judged for another item
        for view, frame in i.views.items():
            assert frame.name == f"{view}-item{i.encoder // PITCH}"
    verdicts = [(i.verdict, i.reasons) for i in items]
    assert verdicts[:6] == [(Verdict.PASS, [])] * 6
    # across the gap, and the frames back that anchor b's count (at least the first: two must
    # agree; a busy machine may take a few more)
    back = next(k for k in range(6, n) if "b" in items[k].views)
    assert 10 <= back <= 14, back
    for k in range(6, back):
        assert verdicts[k] == (Verdict.REJECT, [Reason.MISSING_VIEW.value]), k
        assert [f.view for f in items[k].findings] == ["b"] and list(items[k].views) == ["a"]
    assert verdicts[20] == (Verdict.REJECT, ["CRACK"]), "b's crack rejects its own item"
    assert all(verdicts[k] == (Verdict.PASS, []) for k in range(back, n) if k != 20)
    assert p.matcher.resyncs == {"a": 0, "b": 1}
    assert p.matcher.resync_dropped["b"] == back - 9
    events = [(e["code"], e["event"]) for e in alarms if e["code"].startswith("VIEW_RESYNC")]
    assert events == [("VIEW_RESYNC_B", "raised"), ("VIEW_RESYNC_B", "cleared")]


def test_without_a_frame_of_another_view_at_that_moment_nothing_is_anchored(tmp_path):
    # camera a stops after item 8: camera b, back with a new count, has nothing to anchor by,
    # so none of its later frames is given to an item
    a = [(k, k * PITCH, 200, 0) for k in range(9)]
    b = [(k, k * PITCH, 200, 0) for k in range(5)]
    b += [(k, (k - 10) * PITCH, 200, 1) for k in range(10, 14)]
    items = run(station(tmp_path, {"a": Camera("a", a), "b": Camera("b", b)}))
    assert [i.encoder // PITCH for i in items] == list(range(9))
    assert all(i.verdict is Verdict.REJECT for i in items[5:])
    assert all(list(i.views) == ["a"] for i in items[5:])


def _frame(t: float, count: int, epoch: int) -> Frame:
    return Frame(image=grey(200), t_trigger=t, encoder=count, count_epoch=epoch)


def _trusted(anchors: _Anchors, view: str, upto: int) -> None:
    for k in range(upto):
        assert anchors.align(view, _frame(k * DT, k, 0), None, 0)[0] == k


def test_an_ambiguous_moment_never_anchors():
    """Two other views' frames near the moment with different counts: no guess, held out."""
    an = _Anchors(["a", "b", "c"])
    _trusted(an, "a", 5)
    an.align("b", _frame(0.0, 0, 0), None, 0)
    an.align("c", _frame(0.0, 0, 0), None, 0)
    an.align("c", _frame(4 * DT + 0.03, 9, 0), None, 0)  # c out of step near a's item 4
    for t in (4 * DT + 0.01, 4 * DT + 0.02):
        count, _ = an.align("b", _frame(t, 100, 1), None, 0)
        assert count is None


def test_two_frames_must_agree_before_a_view_is_trusted_again():
    an = _Anchors(["a", "b"])
    _trusted(an, "a", 8)
    an.align("b", _frame(0.0, 0, 0), None, 0)
    count, events = an.align("b", _frame(5 * DT, 50, 1), None, 0)
    assert count is None and [(v, done) for v, done, _ in events] == [("b", False)]
    assert an.align("b", _frame(6 * DT, 70, 1), None, 0)[0] is None, "says another shift"
    count, events = an.align("b", _frame(7 * DT, 71, 1), None, 0)
    assert count == 7, "two agree: trusted, in the station's count"
    assert [(v, done) for v, done, _ in events] == [("b", True)]
    assert an.align("b", _frame(8 * DT, 72, 1), None, 0)[0] == 8


def test_a_frame_that_comes_before_the_other_views_frame_of_its_moment_still_anchors():
    an = _Anchors(["a", "b"])
    _trusted(an, "a", 5)
    an.align("b", _frame(0.0, 0, 0), None, 0)
    assert an.align("b", _frame(5 * DT + 0.01, 0, 1), None, 0)[0] is None  # before a's 5th
    assert an.align("a", _frame(5 * DT, 5, 0), None, 0)[0] == 5
    assert an.align("b", _frame(6 * DT + 0.01, 1, 1), None, 0)[0] is None  # before a's 6th
    count, events = an.align("a", _frame(6 * DT, 6, 0), None, 0)
    assert count == 6 and [(v, done) for v, done, _ in events] == [("b", True)]
    assert an.align("b", _frame(7 * DT + 0.01, 2, 1), None, 0)[0] == 7


def test_a_frame_the_camera_lost_never_anchors_another_view():
    """A lost frame is stamped when its loss is known, not at its moment: no anchor by it."""
    an = _Anchors(["a", "b"])
    _trusted(an, "a", 5)
    an.align("b", _frame(0.0, 0, 0), None, 0)
    for k in (5, 6):
        lost = Frame(image=None, t_trigger=k * DT, encoder=k, count_epoch=0, error="lost")
        assert an.align("a", lost, None, 0)[0] == k
        assert an.align("b", _frame(k * DT + 0.01, k - 5, 1), None, 0)[0] is None
    assert "b" in an.anchoring, "still re-anchoring"
