"""`edge config check` builds what the config names; `edge run`/`edge demo` say the same, exit 2.

A config that names a model the registry does not have, or has but not approved, or whose
file no longer matches its card, must fail the check with the key path of the tool, and
must not start the line with a traceback. A recipe naming tools that do not exist lists
every bad tool by its index.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services import free_port

ROOT = Path(__file__).resolve().parents[1]
#: the shipped detector's card (whichever version is approved)
SHIPPED_CARD = next(
    c
    for c in sorted((ROOT / "models" / "defects").glob("*/card.yaml"))
    if yaml.safe_load(c.read_text()).get("status") == "approved"
)


def edge(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("EDGE_STATE_DIR", "EDGE_MODELS_DIR")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def config(tmp_path: Path, **extra) -> Path:
    data = {"source": {"type": "simulator", "scenario": "vials", "items": 3}, **extra}
    data.setdefault("web", {"enabled": False})
    return write(tmp_path / "line.yaml", data)


def registry_with_card(tmp_path: Path, **changes) -> Path:
    """A models folder holding the shipped detector's card, changed; its file is junk."""
    card = yaml.safe_load(SHIPPED_CARD.read_text())
    card.update(changes)
    d = tmp_path / "models" / "defects" / SHIPPED_CARD.parent.name
    d.mkdir(parents=True)
    write(d / "card.yaml", card)
    (d / "model.int8.onnx").write_bytes(b"not the file the card was signed for")
    return tmp_path / "models"


def assert_refused(tmp_path: Path, conf: Path, *expected: str) -> None:
    """config check, demo and run: exit 2, the same lines naming the tool, no traceback."""
    outputs = []
    for args in (
        ("config", "check", str(conf)),
        ("demo", "--config", str(conf), "--headless", "--json", "--port", str(free_port())),
        ("run", "--config", str(conf), "--port", str(free_port())),
    ):
        r = edge(tmp_path, *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr[-2000:])
        assert "Traceback" not in r.stderr, r.stderr[-2000:]
        for text in expected:
            assert text in r.stderr, (args, r.stderr)
        outputs.append([ln for ln in r.stderr.splitlines() if ln.startswith("  recipes.")])
    assert outputs[0] and outputs[0] == outputs[1] == outputs[2]  # the same message


def test_a_missing_model_fails_the_check_and_the_line_does_not_start(tmp_path):
    recipe = {"name": "v2", "tools": [{"type": "fill_level"}, {"type": "defects", "model": "x"}]}
    conf = config(tmp_path, recipe="v2", recipes={"v2": recipe})
    assert_refused(tmp_path, conf, "recipes.v2.tools.1 (defects): no model named 'x'")


def test_an_unapproved_model_fails_the_check_with_the_tool_key_path(tmp_path):
    models = registry_with_card(tmp_path, status="candidate")
    conf = config(tmp_path, inference={"models_dir": str(models)})  # default vials recipe
    assert_refused(tmp_path, conf, "recipes.vials.tools.", "(defects)", "no approved version")


def test_a_model_file_that_does_not_match_its_card_fails_the_check(tmp_path):
    models = registry_with_card(tmp_path)
    conf = config(tmp_path, inference={"models_dir": str(models)})
    assert_refused(tmp_path, conf, "(defects)", "does not match the card")


def test_a_good_config_still_passes_the_check(tmp_path):
    r = edge(tmp_path, "config", "check", str(config(tmp_path)))
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout


@pytest.mark.parametrize("command", ["check", "demo"])
def test_every_unknown_or_bad_tool_of_a_recipe_is_reported_by_its_index(tmp_path, command):
    tools = [{"type": "fill_level"}, {"type": "nope"}, {"type": "cap", "bogus": 1}, {"type": "x"}]
    conf = config(tmp_path, recipes={"r": {"name": "r", "tools": tools}})
    args = ("config", "check", str(conf)) if command == "check" else ("demo", "--config", str(conf))
    r = edge(tmp_path, *args)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "recipes.r.tools.1 (nope): unknown tool type 'nope'" in r.stderr
    assert "recipes.r.tools.2 (cap): bogus: Extra inputs are not permitted" in r.stderr
    assert "recipes.r.tools.3 (x): unknown tool type 'x'" in r.stderr
    assert "tools.0" not in r.stderr
