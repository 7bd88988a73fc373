"""Configuration: defaults, TOML round trip, and clear errors before any compute."""

import dataclasses

import pytest

from jaxsim.config import (Action, ConfigError, RadioConfig, SimConfig, TaskType, TrafficConfig, config_from_dict,
                           load_config)
from experiment.files import save_config
from jaxsim.params import make_params


def test_defaults_follow_design():
    cfg = SimConfig().validate()
    assert cfg.radio.resource_blocks == 51 and cfg.topology.n_cells == 3 and cfg.n_users == 24
    assert cfg.action_names == ["edge", "cloud_small", "cloud_large"]
    assert cfg.type_names == ["chat", "summarise", "code", "math", "image"]


def test_toml_round_trip(tmp_path):
    cfg = SimConfig().replace(radio=RadioConfig(allocator="equal", shannon_gap_db=2.0))
    path = tmp_path / "c.toml"
    save_config(cfg, path)
    assert load_config(path) == cfg


@pytest.mark.parametrize("data,needle", [
    ({"radio": {"bandwidth_mhz": -20.0}}, "radio.bandwidth_mhz = -20.0 is out of range"),
    ({"radio": {"n_rb": 0}}, "radio.n_rb = 0 is out of range"),
    ({"radio": {"n_rb": 60}}, "radio.n_rb = 60 is out of range"),
    ({"radio": {"allocator": "pf"}}, "radio.allocator = 'pf': unknown; allowed: equal, proportional, min_delay"),
    ({"traffic": {"p_task": 1.5}}, "traffic.p_task = 1.5 is out of range: allowed [0, 1]"),
    ({"traffic": {"task_types": [{"name": "chat", "prompt_tokens": 10}]}}, "missing field(s)"),
    ({"actions": [{"name": "e", "model": "gpt-9", "site": "edge", "hardware": "L40S"},
                  {"name": "c", "model": "llama-3.1-8b", "site": "cloud", "hardware": "H100-SXM"}]},
     "actions[0].model = 'gpt-9': unknown"),
    ({"episode": {"horizon": 0}}, "episode.horizon = 0 is out of range"),
    ({"radio": {"bogus": 1}}, "radio: unknown field(s) ['bogus']"),
    ({"reward": {"w_delay": "x"}}, "reward.w_delay = 'x': must be a number"),
])
def test_bad_values_name_field_and_range(data, needle):
    with pytest.raises(ConfigError) as e:
        config_from_dict(data)
    assert needle in str(e.value)


def test_quality_table_must_cover_task_types():
    cfg = SimConfig()
    tt = cfg.traffic.task_types + (TaskType("video", 100, 100, 32, 5.0, 0.5),)
    with pytest.raises(ConfigError, match=r"models\[0\].quality: missing task type 'video'"):
        cfg.replace(traffic=TrafficConfig(task_types=tt)).validate()
    m0 = dataclasses.replace(cfg.models[0], quality={**cfg.models[0].quality, "poetry": 0.5})
    with pytest.raises(ConfigError, match=r"quality.poetry: unknown task type"):
        cfg.replace(models=(m0,) + cfg.models[1:]).validate()


def test_background_must_fit_server():
    cfg = SimConfig()
    acts = (cfg.actions[0], dataclasses.replace(cfg.actions[1], bg_max_seqs=10_000), cfg.actions[2])
    with pytest.raises(ConfigError, match=r"actions\[1\].bg_max_seqs = 10000 is out of range"):
        make_params(cfg.replace(actions=acts))


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("radio = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    assert Action("x", "llama-3.1-8b", "cloud", "H100-SXM")  # dataclass builds; validation is separate
