"""A bad config never starts the line, and says exactly what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge.cli import app
from edge.config import ConfigError, load_config

runner = CliRunner()
EXAMPLES = Path(__file__).parents[1] / "examples"


def test_the_embedded_default_is_the_simulator_demo():
    cfg = load_config()
    assert cfg.source.type == "simulator"
    assert cfg.active_recipe().name == cfg.source.scenario


def test_config_check_prints_every_error_with_its_key_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "source:\n  type: simulator\n  rate_per_min: -5\npipeline:\n  workers: 0\n"
        "plc:\n  type: profibus\nunknown_key: 1\n"
    )
    res = runner.invoke(app, ["config", "check", str(bad)])
    assert res.exit_code != 0
    out = res.output
    assert "source.simulator.rate_per_min" in out
    assert "pipeline.workers" in out
    assert "plc" in out and "profibus" in out
    assert "unknown_key" in out


def test_malformed_yaml_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: [unclosed\n")
    with pytest.raises(ConfigError) as exc:
        load_config(bad)
    assert "line" in exc.value.errors[0]
    res = runner.invoke(app, ["config", "check", str(bad)])
    assert res.exit_code == 2


def test_a_missing_file_is_a_clear_error(tmp_path):
    res = runner.invoke(app, ["config", "check", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2 and "cannot read" in res.output


def test_an_unknown_recipe_is_refused(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("recipe: ampoules\n")
    with pytest.raises(ConfigError, match="ampoules"):
        load_config(f)


def test_a_gstreamer_source_must_end_in_appsink(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("source:\n  type: gstreamer\n  pipeline: nvarguscamerasrc ! fakesink\n")
    with pytest.raises(ConfigError, match="appsink"):
        load_config(f)


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_shipped_example_configs_are_valid(name):
    res = runner.invoke(app, ["config", "check", str(EXAMPLES / name)])
    assert res.exit_code == 0, res.output
