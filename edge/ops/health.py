"""Liveness and readiness, as plain dicts (the HTTP routes only serialise them).

Liveness: the process answers and the line makes progress (the same test the systemd
watchdog uses). Readiness: each part the line needs to release product is up: camera,
model, PLC, broker, records (the database takes writes and its free-space reserve holds).
A part the config leaves off is reported and does not count.
"""

from __future__ import annotations

import time
from typing import Any

from edge.ops.metrics import component, safe_status
from edge.ops.progress import Progress


def _check(up: bool, detail: str, configured: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "up": bool(up) if configured else None,
        "configured": configured,
        "detail": detail,
        **extra,
    }


def camera(app: Any) -> dict[str, Any]:
    p = app.pipeline
    if not getattr(p, "_threads", None):
        return _check(False, "not started")
    done = getattr(p, "_capture_done", None)
    if done is not None and done.is_set():
        return _check(False, "capture has ended")
    age = time.monotonic() - p.last_frame_at
    limit = app.cfg.pipeline.stall_timeout_s
    if p.alarms.is_active("CAMERA_FAULT"):
        return _check(False, "camera fault alarm active")
    missing = [a.code for a in p.alarms.active() if a.code.startswith("CAMERA_NO_FRAME")]
    if missing:  # a triggered camera's items reject meanwhile (several views: one per camera)
        return _check(False, f"camera frames missing ({', '.join(sorted(missing))})")
    if age > limit:
        return _check(False, f"no frame for {age:.1f} s", last_frame_age_s=round(age, 3))
    return _check(True, "frames arriving", last_frame_age_s=round(age, 3))


def model(app: Any) -> dict[str, Any]:
    p = app.pipeline
    prog = Progress.of(app)
    tools = list(getattr(p, "tool_names", []))
    models = sorted(f"{m.get('name')}:{m.get('version')}" for m in prog.models.values())
    waiting = [d for ok, d in _tool_readiness(p) if not ok]
    if waiting:
        return _check(False, "; ".join(waiting), tools=tools, models=models)
    if p.alarms.is_active("MODEL_ERROR"):
        return _check(False, "model error alarm active", tools=tools, models=models)
    if prog.last_tool_errors:
        return _check(
            False, f"tools failing: {', '.join(prog.last_tool_errors)}", tools=tools, models=models
        )
    detail = "tools loaded" if prog.last_inspected_at is None else "inspecting"
    return _check(True, detail, tools=tools, models=models)


def _tool_readiness(pipeline: Any) -> list[tuple[bool, str]]:
    """Tools that load something before they can judge (a TensorRT engine being built)."""
    out = []
    for tool in list(getattr(pipeline, "tools", [])):
        check = getattr(tool, "readiness", None)
        if callable(check):
            try:
                out.append(check())
            except Exception as exc:  # a probe never takes the web UI down
                out.append((False, f"{getattr(tool, 'name', '?')}: {exc}"))
    return out


def _component(app: Any, configured: bool, *names: str) -> dict[str, Any]:
    if not configured:
        return _check(False, "not configured", configured=False)
    c = component(app, *names)
    if c is None:
        return _check(False, "configured but its component is not running")
    st = safe_status(c)
    detail = str(st.get("detail") or st.get("state") or st.get("error") or "")
    return _check(bool(st.get("up")), detail or ("up" if st.get("up") else "down"))


def plc(app: Any) -> dict[str, Any]:
    return _component(app, app.cfg.plc.type != "none", "plc")


def broker(app: Any) -> dict[str, Any]:
    return _component(app, app.cfg.mqtt.enabled, "mqtt", "publish", "sparkplug")


def records(app: Any) -> dict[str, Any]:
    """Records can be written: a line that cannot record must not release product."""
    rec = getattr(app.pipeline, "recorder", None)
    if rec is None:
        return _check(False, "no recorder")
    up, detail = rec.health()
    return _check(up, detail, **rec.status())


def readiness(app: Any) -> dict[str, Any]:
    checks = {
        "camera": camera(app),
        "model": model(app),
        "plc": plc(app),
        "broker": broker(app),
        "records": records(app),
    }
    ready = all(c["up"] for c in checks.values() if c["configured"])
    return {"ready": ready, "checks": checks}


def liveness(app: Any) -> dict[str, Any]:
    cfg = app.cfg.ops.watchdog
    problem = Progress.of(app).hung_reason(cfg.no_verdict_timeout_s, cfg.no_frame_timeout_s)
    return {"alive": problem is None, "detail": problem or "making progress"}
