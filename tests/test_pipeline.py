"""The fail-safe shape of the pipeline: what the plant needs from every item."""

from __future__ import annotations

from edge.config import parse_config
from edge.domain import Verdict
from edge.pipeline import Pipeline

from fake_tools import ListSource, grey


def make(
    tmp_path,
    tools,
    images,
    *,
    deadline_ms=500,
    workers=2,
    queue_size=16,
    paced=False,
    period_s=0.0,
    classes=None,
    require_batch=False,
):
    cfg = parse_config(
        {
            "records": {"state_dir": str(tmp_path), "sample_pass_every": 0},
            "pipeline": {"workers": workers, "deadline_ms": deadline_ms, "queue_size": queue_size},
            "recipe": "t",
            "recipes": {
                "t": {
                    "name": "t",
                    "tools": tools,
                    "classes": classes or {},
                    "require_batch": require_batch,
                }
            },
        }
    )
    src = ListSource(images, period_s=period_s, paced=paced)
    return Pipeline(cfg, source=src)


def run(p: Pipeline):
    got = []
    p.bus.subscribe_sync("verdict", lambda _t, item: got.append(item))
    p.run(timeout=60)
    return sorted(got, key=lambda i: i.seq)


def test_good_items_pass_only_when_every_tool_ran(tmp_path):
    items = run(
        make(
            tmp_path,
            [{"type": "behaviour", "name": "a"}, {"type": "behaviour", "name": "b"}],
            [grey()] * 5,
        )
    )
    assert [i.verdict for i in items] == [Verdict.PASS] * 5
    assert all(i.reasons == [] for i in items)
    assert all({r.tool for r in i.results} == {"a", "b"} for i in items)


def test_a_late_verdict_rejects_the_item(tmp_path):
    items = run(
        make(
            tmp_path,
            [{"type": "behaviour", "sleep_ms": 300}],
            [grey()] * 3,
            deadline_ms=100,
            workers=3,
        )
    )
    assert len(items) == 3
    assert all(i.verdict is Verdict.REJECT and i.reasons == ["TIMEOUT"] for i in items)
    # the verdict became final at the deadline, not when the slow tool finished
    assert all(i.latency_ms < 280 for i in items)


def test_a_tool_that_raises_rejects_with_tool_error_and_the_line_goes_on(tmp_path):
    items = run(make(tmp_path, [{"type": "behaviour", "raise_on": [2]}], [grey()] * 4))
    assert [i.verdict for i in items] == [Verdict.PASS, Verdict.REJECT, Verdict.PASS, Verdict.PASS]
    assert items[1].reasons == ["TOOL_ERROR"]
    assert "sensor glitch" in items[1].results[0].error


def test_a_finding_rejects_with_its_reason_code(tmp_path):
    items = run(
        make(
            tmp_path,
            [{"type": "behaviour", "find": "LOW_FILL", "find_when_mean_below": 100}],
            [grey(200), grey(50), grey(200)],
        )
    )
    assert [i.verdict for i in items] == [Verdict.PASS, Verdict.REJECT, Verdict.PASS]
    assert items[1].reasons == ["LOW_FILL"]


def test_a_warn_class_is_recorded_but_does_not_reject(tmp_path):
    items = run(
        make(
            tmp_path,
            [{"type": "behaviour", "find": "SCRATCH"}],
            [grey()],
            classes={"SCRATCH": {"severity": "minor", "action": "warn"}},
        )
    )
    assert items[0].verdict is Verdict.PASS
    assert items[0].findings[0].code == "SCRATCH"


def test_an_unknown_finding_class_rejects(tmp_path):
    items = run(make(tmp_path, [{"type": "behaviour", "find": "SOMETHING_NEW"}], [grey()]))
    assert items[0].verdict is Verdict.REJECT and items[0].reasons == ["SOMETHING_NEW"]


def test_an_unreadable_frame_is_rejected_not_dropped(tmp_path):
    items = run(make(tmp_path, [{"type": "behaviour"}], [grey(), None, grey()]))
    assert len(items) == 3
    assert items[1].verdict is Verdict.REJECT and items[1].reasons == ["IMAGE_ERROR"]


def test_a_recipe_without_tools_proves_nothing(tmp_path):
    items = run(make(tmp_path, [], [grey()]))
    assert items[0].verdict is Verdict.REJECT and "TOOL_MISSING" in items[0].reasons


def test_an_overloaded_line_rejects_what_it_cannot_inspect(tmp_path):
    # frames arrive every 5 ms, each takes 60 ms on a single worker with a queue of 1
    items = run(
        make(
            tmp_path,
            [{"type": "behaviour", "sleep_ms": 60}],
            [grey()] * 12,
            workers=1,
            queue_size=1,
            paced=True,
            period_s=0.005,
            deadline_ms=2000,
        )
    )
    assert len(items) == 12
    reasons = [r for i in items for r in i.reasons]
    assert "NOT_INSPECTED" in reasons
    assert all(i.verdict is Verdict.REJECT for i in items if i.reasons)


def test_no_batch_means_nothing_passes_when_the_recipe_requires_one(tmp_path):
    items = run(make(tmp_path, [{"type": "behaviour"}], [grey()], require_batch=True))
    assert items[0].verdict is Verdict.REJECT and items[0].reasons == ["NO_BATCH"]


def test_every_verdict_is_recorded_with_its_tools(tmp_path):
    p = make(
        tmp_path,
        [{"type": "behaviour", "find": "LOW_FILL", "find_when_mean_below": 100}],
        [grey(200), grey(50)],
    )
    items = run(p)
    rows = {r["id"]: r for r in p.db.items(limit=10)}
    assert set(rows) == {i.id for i in items}
    rej = rows[items[1].id]
    assert rej["verdict"] == "REJECT" and rej["reasons"] == ["LOW_FILL"]
    assert rej["tools"] == {"behaviour": "test-1"}
    assert rej["image_sha256"] and p.images.verify(rej["image_sha256"])


def test_sequence_continues_after_a_restart(tmp_path):
    first = run(make(tmp_path, [{"type": "behaviour"}], [grey()] * 3))
    second = run(make(tmp_path, [{"type": "behaviour"}], [grey()] * 2))
    assert [i.seq for i in first + second] == [1, 2, 3, 4, 5]
