"""Several cameras per item: what the plant needs from a multi-view station.

Frames join their item by encoder count, never by arrival order; an item passes only if
every configured view arrived in time and passed; a view that did not come is REJECT
MISSING_VIEW naming it; a frame that matches no item is counted and alarmed, never attached
to another item; a defect one camera sees rejects the item. A single-view station is as before.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from edge.capture.base import Source
from edge.config import ConfigError, parse_config
from edge.domain import Frame, Reason, Verdict
from edge.pipeline import Pipeline
from edge.record import item_row

from fake_tools import grey

PITCH = 800  # encoder counts between two items


class ScriptedCamera(Source):
    """One view's camera: frames at scripted times, each with its trigger's encoder count.

    `script` is a list of (seconds after start, encoder count, grey level)."""

    def __init__(self, name: str, script: list[tuple[float, int, int]]):
        super().__init__(cfg=None)
        self.name, self.script = name, script

    def frames(self) -> Iterator[Frame]:
        t0 = time.monotonic()
        for i, (at, enc, level) in enumerate(self.script):
            if self.wait(max(0.0, t0 + at - time.monotonic())):
                return
            yield Frame(
                image=grey(level),
                t_trigger=time.monotonic(),
                encoder=enc,
                source=self.name,
                name=f"{self.name}-{i}",
                frame_id=i + 1,
            )


def station(tmp_path, views, cameras, *, tools=None, view_wait_ms=150, deadline_ms=400):
    """A station whose views run the recipe's `behaviour` tools on scripted cameras."""
    tools = tools or [
        {"type": "behaviour", "name": "dark", "find": "CRACK", "find_when_mean_below": 60}
    ]
    cfg = parse_config(
        {
            "records": {"state_dir": str(tmp_path), "sample_pass_every": 1},
            "pipeline": {
                "workers": 2,
                "deadline_ms": deadline_ms,
                "view_wait_ms": view_wait_ms,
                "view_tolerance_counts": 100,
            },
            "recipe": "t",
            "recipes": {"t": {"name": "t", "tools": tools}},
            "views": views,
        }
    )
    return Pipeline(cfg, view_sources=cameras)


def run(p: Pipeline):
    got = []
    p.bus.subscribe_sync("verdict", lambda _t, item: got.append(item))
    p.run(timeout=60)
    return sorted(got, key=lambda i: i.encoder)


def test_an_item_passes_only_when_every_view_arrived_and_passed(tmp_path):
    cams = {
        "a": ScriptedCamera("a", [(0.05 * k, k * PITCH, 200) for k in range(4)]),
        "b": ScriptedCamera("b", [(0.05 * k + 0.01, k * PITCH + 3, 200) for k in range(4)]),
    }
    items = run(station(tmp_path, [{"name": "a"}, {"name": "b"}], cams))
    assert [i.verdict for i in items] == [Verdict.PASS] * 4
    for i in items:
        assert list(i.views) == ["a", "b"]
        assert {(r.tool, r.view) for r in i.results} == {("dark", "a"), ("dark", "b")}


def test_a_view_that_does_not_arrive_rejects_missing_view_naming_it(tmp_path):
    cams = {
        "a": ScriptedCamera("a", [(0.05 * k, k * PITCH, 200) for k in range(4)]),
        # camera b misses item 2's trigger
        "b": ScriptedCamera("b", [(0.05 * k, k * PITCH, 200) for k in (0, 1, 3)]),
    }
    p = station(tmp_path, [{"name": "a"}, {"name": "b"}], cams)
    items = run(p)
    assert [i.verdict for i in items] == [Verdict.PASS, Verdict.PASS, Verdict.REJECT, Verdict.PASS]
    missing = items[2]
    assert missing.reasons == [Reason.MISSING_VIEW.value]
    assert [(f.code, f.view) for f in missing.findings] == [("MISSING_VIEW", "b")]
    assert p.matcher.missing_by_view == {"a": 0, "b": 1}
    # the record and the result message name the view that did not come
    row = item_row(missing, "edge-01")
    views = {v["name"]: v for v in row["message"]["views"]}
    assert views["a"]["arrived"] and not views["b"]["arrived"]
    assert views["b"]["findings"][0]["code"] == "MISSING_VIEW"
    import json
    from pathlib import Path

    import jsonschema

    schema_file = Path(__file__).parents[1] / "edge/publish/schemas/result.v1.json"
    schema = json.loads(schema_file.read_text())
    assert "views" in schema["properties"]  # published, not only sent
    jsonschema.validate({**row["message"], "seq": 1}, schema)


def test_frames_join_their_item_by_encoder_count_not_by_arrival_order(tmp_path):
    # camera b delivers items 0..3 in the order 1, 0, 3, 2; item 1 is dark in view b only
    b_script = [(0.0, 1 * PITCH, 20), (0.02, 0, 200), (0.1, 3 * PITCH, 200), (0.12, 2 * PITCH, 200)]
    cams = {
        "a": ScriptedCamera("a", [(0.03 * k, k * PITCH, 200) for k in range(4)]),
        "b": ScriptedCamera("b", b_script),
    }
    items = run(station(tmp_path, [{"name": "a"}, {"name": "b"}], cams))
    assert [i.encoder // PITCH for i in items] == [0, 1, 2, 3]
    for i in items:
        for frame in i.views.values():
            assert abs(frame.encoder - i.encoder) <= 100  # never another item's frame
    assert [i.verdict for i in items] == [Verdict.PASS, Verdict.REJECT, Verdict.PASS, Verdict.PASS]
    assert [(f.code, f.view) for f in items[1].findings] == [("CRACK", "b")]


def test_a_frame_that_matches_no_item_is_counted_and_alarmed_never_attached(tmp_path):
    cams = {
        "a": ScriptedCamera("a", [(0.0, 0, 200), (0.05, PITCH, 200), (0.06, PITCH + 5, 20)]),
        # b: item 0's frame arrives long after item 0 was final; item 1's in time
        "b": ScriptedCamera("b", [(0.05, PITCH, 200), (1.0, 2, 20)]),
    }
    p = station(tmp_path, [{"name": "a"}, {"name": "b"}], cams, view_wait_ms=300)
    raised = []
    p.bus.subscribe_sync("alarm", lambda _t, ev: raised.append(ev))
    items = run(p)
    assert len(items) == 2  # the stray frames made no item
    first, second = items
    assert first.verdict is Verdict.REJECT and first.reasons == [Reason.MISSING_VIEW.value]
    assert list(first.views) == ["a"]  # the late frame of view b was not attached
    # view a's second frame for item 1 (a duplicate trigger) is not attached either: the dark
    # duplicate would have rejected it
    assert second.verdict is Verdict.PASS
    assert second.views["a"].name == "a-1"
    assert p.matcher.unmatched == 2
    assert p.matcher.unmatched_by_view == {"a": 1, "b": 1}
    assert p.alarms.is_active("VIEW_UNMATCHED")
    assert any("VIEW_UNMATCHED" in str(ev) for ev in raised)


def test_views_run_their_own_tools_and_one_decision_covers_all(tmp_path):
    tools = [
        {"type": "behaviour", "name": "glass", "find": "CRACK", "find_when_mean_below": 60},
        {"type": "behaviour", "name": "code", "find": "NO_READ", "find_when_mean_below": 150},
    ]
    cams = {
        "front": ScriptedCamera("front", [(0.0, 0, 200), (0.05, PITCH, 200)]),
        # the side camera sees a grey label (mean 100): the code tool would fail there
        "side": ScriptedCamera("side", [(0.0, 0, 100), (0.05, PITCH, 20)]),
    }
    views = [{"name": "front"}, {"name": "side", "tools": ["glass"]}]
    items = run(station(tmp_path, views, cams, tools=tools))
    assert {(r.tool, r.view) for r in items[0].results} == {
        ("glass", "front"),
        ("code", "front"),
        ("glass", "side"),
    }
    assert items[0].verdict is Verdict.PASS
    assert items[1].verdict is Verdict.REJECT and items[1].reasons == ["CRACK"]


def test_an_unreadable_view_rejects_the_item_naming_the_view(tmp_path):
    class Broken(ScriptedCamera):
        def frames(self):
            for f in super().frames():
                f.image, f.error = None, "short frame"
                yield f

    cams = {
        "a": ScriptedCamera("a", [(0.0, 0, 200)]),
        "b": Broken("b", [(0.0, 0, 200)]),
    }
    (item,) = run(station(tmp_path, [{"name": "a"}, {"name": "b"}], cams))
    assert item.verdict is Verdict.REJECT and item.reasons == [Reason.IMAGE_ERROR.value]
    assert [(f.code, f.view) for f in item.findings] == [("IMAGE_ERROR", "b")]


def test_a_camera_further_down_the_belt_joins_its_item_by_its_offset(tmp_path):
    # camera b is triggered 2,000 counts after the item's trigger (2.5 pitches downstream):
    # by arrival it would see a later item; by count less its offset, the right one
    cams = {
        "a": ScriptedCamera("a", [(0.03 * k, k * PITCH, 200 if k != 1 else 20) for k in range(4)]),
        "b": ScriptedCamera("b", [(0.03 * k + 0.01, k * PITCH + 2000, 200) for k in range(4)]),
    }
    views = [{"name": "a"}, {"name": "b", "encoder_offset": 2000}]
    items = run(station(tmp_path, views, cams))
    assert [i.encoder for i in items] == [0, PITCH, 2 * PITCH, 3 * PITCH]
    assert [i.views["b"].encoder - i.encoder for i in items] == [2000] * 4
    assert [i.verdict for i in items] == [Verdict.PASS, Verdict.REJECT, Verdict.PASS, Verdict.PASS]


def test_every_view_is_kept_as_evidence_side_by_side(tmp_path):
    cams = {
        "a": ScriptedCamera("a", [(0.0, 0, 200)]),
        "b": ScriptedCamera("b", [(0.0, 0, 20)]),
    }
    p = station(tmp_path, [{"name": "a"}, {"name": "b"}], cams)
    (item,) = run(p)
    assert item.verdict is Verdict.REJECT  # view b is dark
    deadline = time.monotonic() + 10
    row = None
    while time.monotonic() < deadline:
        row = p.db.conn.execute("SELECT image_sha256 FROM items").fetchone()
        if row and row[0]:
            break
        time.sleep(0.05)
    import cv2

    img = cv2.imread(str(p.images.path_for(row[0])))
    assert img.shape[1] == 2 * grey().shape[1]  # both views, side by side
    assert img[:, :64].mean() > 150 and img[:, 64:].mean() < 60


def test_views_config_errors_name_the_problem():
    base = {"recipe": "vials"}
    with pytest.raises(ConfigError, match="two views named"):
        parse_config({**base, "views": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(ConfigError, match="not in recipe"):
        parse_config({**base, "views": [{"name": "a", "tools": ["nope"]}]})
    with pytest.raises(ConfigError, match="the one view that faces the code"):
        parse_config({**base, "views": [{"name": "a"}, {"name": "b"}]})
    with pytest.raises(ConfigError, match="run in no view"):
        parse_config({**base, "views": [{"name": "a", "tools": ["glass"]}]})
    with pytest.raises(ConfigError, match="its own `source`"):
        parse_config({**base, "source": {"type": "folder", "path": "."}, "views": [{"name": "a"}]})
    cam = {"type": "genicam", "serial": "CAM-1"}
    with pytest.raises(ConfigError, match="must be 0 with GenICam views"):
        parse_config({**base, "views": [{"name": "a", "source": cam}]})
    ok = parse_config(
        {**base, "pipeline": {"view_tolerance_counts": 0}, "views": [{"name": "a", "source": cam}]}
    )
    assert ok.views[0].source.type == "genicam"


def test_a_single_view_station_is_unchanged(tmp_path):
    cfg = parse_config(
        {
            "records": {"state_dir": str(tmp_path)},
            "source": {"type": "simulator", "items": 6, "realtime": False, "defect_rate": 1.0},
        }
    )
    p = Pipeline(cfg)
    items = run(p)
    assert p.matcher is None and len(items) == 6
    for i in items:
        assert i.views is None
        msg = item_row(i, "edge-01")["message"]
        assert "views" not in msg
        assert all("view" not in f for f in msg["findings"])


def test_the_simulator_shows_a_local_defect_to_one_camera_only():
    from edge.config import SimulatorSource
    from edge.sim.twin import LineSimulator

    sims = [
        LineSimulator(SimulatorSource(views=3, view=k, defect_rate=1.0, defect_weights=w))
        for k in range(3)
        for w in [{"crack": 1, "low_fill": 0, "missing_cap": 0, "cap_tilt": 0}]
    ]
    seen = set()
    for i in range(12):
        renders = [s.render(i) for s in sims]
        truths = [t for _, t in renders]
        (where,) = truths[0]["seen_in"]
        seen.add(where)
        for k, t in enumerate(truths):
            assert t["defects"][0]["class"] in ("crack", "scratch", "particle")
            assert ("bbox" in t["defects"][0]) == (k == where)
        # the code faces the front camera only
        assert truths[0]["code"] is not None and truths[1]["code"] is None
        assert np.any(renders[0][0] != renders[1][0])
    assert len(seen) > 1  # cracks face different cameras


def test_a_multi_view_export_and_recall_per_view(tmp_path):
    import json

    from edge.config import SimulatorSource
    from edge.sim.export import export
    from edge.truth_eval import score_against_truth

    cfg = SimulatorSource(views=3, defect_rate=1.0, realtime=False)
    summary = export(cfg, tmp_path, 24)
    assert summary["views"] == 3
    front = [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
    for k in (1, 2):
        side = (tmp_path / "views" / str(k) / "truth.jsonl").read_text().splitlines()
        side = [json.loads(line) for line in side]
        assert [t["id"] for t in side] == [t["id"] for t in front]
        assert all(abs(a["encoder"] - b["encoder"]) < 100 for a, b in zip(front, side, strict=True))
        assert all((tmp_path / "views" / str(k) / t["image"]).is_file() for t in side)
    only = {}
    for t in front:
        if len(t.get("seen_in", [])) == 1:
            only.setdefault(t["seen_in"][0], []).append(t["id"])
    assert len(only) >= 2, "local defects face more than one camera"
    blind = min(only)  # a station whose camera `blind` saw nothing: its defects escape
    pred = [
        {"id": t["id"], "verdict": "PASS" if t["id"] in only[blind] else "REJECT", "reasons": []}
        for t in front
    ]
    per_view = score_against_truth(front, pred)["per_view"]
    assert per_view[str(blind)]["recall"] == 0.0
    assert all(v["recall"] == 1.0 for k, v in per_view.items() if k != str(blind))


def test_the_hmi_shows_every_view_of_the_item_side_by_side(tmp_path):
    from edge.web.hub import item_view

    tools = [{"type": "behaviour", "name": "dark", "find": "CRACK", "find_when_mean_below": 60}]
    cams = {
        "a": ScriptedCamera("a", [(0.0, 0, 200)]),
        "b": ScriptedCamera("b", [(0.0, 0, 20)]),
    }
    (item,) = run(station(tmp_path, [{"name": "a"}, {"name": "b"}], cams, tools=tools))
    item.findings[0].bbox = (5, 6, 7, 8)  # where the tool saw it, in view b's own pixels
    view = item_view(item)
    assert view["views"] == ["a", "b"]
    assert (view["width"], view["height"]) == (2 * 64, 48)
    (finding,) = view["findings"]
    assert finding["view"] == "b"
    assert finding["bbox"] == [5 + 64, 6, 7, 8]  # drawn on view b's half
    assert item.findings[0].to_dict()["bbox"] == [5, 6, 7, 8]  # the record keeps view b's


def test_a_defect_one_camera_sees_rejects_the_vial_through_sim_inspect_and_eval(tmp_path):
    """`edge sim --views 3`, `edge inspect` with the three-camera example, `edge eval`: every
    crack, scratch or particle that faced one camera only is rejected, by that camera."""
    import json
    from pathlib import Path

    from typer.testing import CliRunner

    from edge.cli import app

    example = Path(__file__).parents[1] / "examples" / "vials-3views.yaml"
    cfg = tmp_path / "three.yaml"
    weights = {"crack": 1, "scratch": 1, "particle": 1}
    text = example.read_text().replace(
        "  code_defect_rate: 0.02\n",
        "  code_defect_rate: 0.0\n  defect_weights: " + json.dumps(weights) + "\n",
    )
    cfg.write_text(text.replace("defect_rate: 0.1", "defect_rate: 0.5"))
    data, pred = tmp_path / "sim", tmp_path / "pred.jsonl"
    r = CliRunner()
    out = r.invoke(
        app, ["sim", "--views", "3", "--items", "30", "--out", str(data), "--config", str(cfg)]
    )
    assert out.exit_code == 0, out.output
    out = r.invoke(
        app, ["inspect", "--source", str(data), "--jsonl", str(pred), "--config", str(cfg)]
    )
    assert out.exit_code == 0, out.output
    out = r.invoke(app, ["eval", "--truth", str(data / "truth.jsonl"), "--pred", str(pred)])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["escapes"] == 0 and report["missing_predictions"] == 0
    assert sum(v["defects_only_here"] for v in report["per_view"].values()) >= 5
    assert all(v["recall"] == 1.0 for v in report["per_view"].values())
    # and it was the camera that faced the defect that rejected it (not a timeout's doing)
    names = ["front", "left", "right"]
    truth = {t["id"]: t for t in map(json.loads, (data / "truth.jsonl").read_text().splitlines())}
    by_camera = judged = 0
    for p in map(json.loads, pred.read_text().splitlines()):
        t = truth[p["id"]]
        if len(t.get("seen_in", [])) != 1 or "TIMEOUT" in p["reasons"]:
            continue  # a defect every camera sees, or one the deadline rejected
        judged += 1
        (k,) = t["seen_in"]
        by_camera += any(
            f.get("view") == names[k] and f["code"] in t["reasons"] for f in p["findings"]
        )
    assert judged >= 5 and by_camera == judged
