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
    ({"actions": [{"replace": True, "name": "e", "model": "gpt-9", "site": "edge", "hardware": "L40S"},
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


# ------------------------------------------------------------------ configs that extend the defaults
A100 = {"name": "A100", "peak_flops": 312e12, "mem_bw_bytes_s": 2.0e12, "mem_bytes": 80e9}
TRANSLATE = {"name": "translate", "prompt_tokens": 300, "output_tokens": 300, "bits_per_output_token": 32,
             "budget_s": 6.0, "min_quality": 0.6}


def test_tables_merge_with_the_defaults_by_name():
    """A new name adds an entry, an existing one replaces that entry, ``replace = true`` replaces the table."""
    base = SimConfig().validate()
    cfg = config_from_dict({"hardware": [A100],
                            "actions": [{"name": "edge", "model": "llama-3.2-3b", "site": "edge", "hardware": "A100"}]})
    assert [h.name for h in cfg.hardware] == ["L40S", "L4", "H100-SXM", "A100"]
    assert cfg.action_names == base.action_names and cfg.actions[0].hardware == "A100"
    assert cfg.actions[1:] == base.actions[1:] and cfg.models == base.models
    only = config_from_dict({"hardware": [{"replace": True, **A100}, base.hardware[2].__dict__],
                             "actions": [{"name": "edge", "model": "llama-3.2-3b", "site": "edge", "hardware": "A100"}]})
    assert [h.name for h in only.hardware] == ["A100", "H100-SXM"]
    with pytest.raises(ConfigError, match=r"actions\[0\].hardware = 'L40S': unknown; allowed: A100 \(the entry "
                                          r"named 'edge'\)"):
        config_from_dict({"hardware": [{"replace": True, **A100}]})
    with pytest.raises(ConfigError, match=r"hardware\[1\].replace: only the first entry"):
        config_from_dict({"hardware": [A100, {"replace": True, **A100, "name": "B"}]})
    with pytest.raises(ConfigError, match=r"hardware: duplicate name\(s\) \['A100'\]"):
        config_from_dict({"hardware": [A100, A100]})


def test_a_new_task_type_takes_a_declared_quality_or_names_what_to_add():
    cfg = config_from_dict({"traffic": {"task_types": [{**TRANSLATE, "quality_like": "chat"}]}})
    assert cfg.type_names == ["chat", "summarise", "code", "math", "image", "translate"]
    assert all(m.quality["translate"] == m.quality["chat"] for m in cfg.models)
    with pytest.raises(ConfigError, match=r"models\[0\].quality: missing task type 'translate'.*add translate = "
                                          r"<quality in \[0, 1\]> to the quality table of model 'llama-3.2-3b', or "
                                          r"quality_like"):
        config_from_dict({"traffic": {"task_types": [TRANSLATE]}})
    with pytest.raises(ConfigError, match=r"quality_like = 'poetry': unknown task type"):
        config_from_dict({"traffic": {"task_types": [{**TRANSLATE, "quality_like": "poetry"}]}})
    # a model's own value wins over the fallback
    m = {**SimConfig().models[0].__dict__, "quality": {**SimConfig().models[0].quality, "translate": 0.1}}
    own = config_from_dict({"traffic": {"task_types": [{**TRANSLATE, "quality_like": "chat"}]}, "models": [m]})
    assert own.models[0].quality["translate"] == 0.1 and own.models[1].quality["translate"] == 0.730


def test_user_scenario_of_five_lines_runs(tmp_path, capsys):
    """The issue's example: one GPU and one task type added to the defaults, a few lines of TOML."""
    from scripts.studies import montecarlo
    path = tmp_path / "mine.toml"
    path.write_text('[[hardware]]\nname = "A100"\npeak_flops = 312e12\nmem_bw_bytes_s = 2.0e12\nmem_bytes = 80e9\n'
                    '[[traffic.task_types]]\nname = "translate"\nprompt_tokens = 300\noutput_tokens = 300\n'
                    'bits_per_output_token = 32\nbudget_s = 6.0\nmin_quality = 0.6\nquality_like = "chat"\n'
                    '[[actions]]\nname = "edge"\nmodel = "llama-3.2-3b"\nsite = "edge"\nhardware = "A100"\n')
    rc = montecarlo.main(["--config", str(path), "--set", "episode.horizon=3", "--set", "topology.users_per_cell=2",
                          "--policies", "greedy", "--episodes", "1", "--out", str(tmp_path / "run")])
    assert rc == 0, capsys.readouterr().err
    saved = load_config(tmp_path / "run" / "config.toml")
    assert saved.actions[0].hardware == "A100" and "translate" in saved.type_names and saved.episode.horizon == 3


@pytest.mark.parametrize("name", ["default", "loaded", "tiny", "edge_tiers"])
def test_printed_config_documents_every_field_and_reads_back_equal(name):
    import tomllib
    from jaxsim.config import config_toml, scenario_path
    cfg = load_config(scenario_path(name))
    text = config_toml(cfg)
    assert config_from_dict(tomllib.loads(text)) == cfg
    assert config_from_dict(tomllib.loads(config_toml(cfg, comments=False))) == cfg
    lines = dict(l.split(" = ", 1) for l in text.splitlines() if " = " in l and not l.startswith(("#", "[")))
    assert "slot length, s" in lines["slot_s"] and "allowed [0.001, 3600]" in lines["slot_s"]
    assert "bytes/s per GPU" in lines["link_bw_bytes_s"] and "allowed an integer in [1, 37]" in lines["n_cells"]


def test_set_overrides_any_field_through_the_same_validation():
    from jaxsim.config import set_fields
    cfg = set_fields(SimConfig().validate(), ["episode.horizon=20", "topology.users_per_cell=4",
                                              "actions.cloud_large.bg_max_seqs=500", "actions.edge.hardware=L4",
                                              "traffic.task_types.chat.budget_s=8", "radio.allocator=equal",
                                              "models.llama-3.1-8b.quality.code=0.7"])
    assert (cfg.episode.horizon, cfg.n_users, cfg.actions[2].bg_max_seqs, cfg.actions[0].hardware) == (20, 12, 500, "L4")
    assert cfg.traffic.task_types[0].budget_s == 8 and cfg.radio.allocator == "equal"
    assert cfg.models[1].quality["code"] == 0.7
    for bad, needle in [("episode.horizon=0", "episode.horizon = 0 is out of range"),
                        ("episode.horizn=3", "episode: unknown field(s) ['horizn']"),
                        ("actions.foo.n_gpus=2", "name an entry of actions"),
                        ("nosuch.x=1", "unknown section 'nosuch'"), ("horizon=3", "must be section.field=value"),
                        ("actions.edge.hardware=TPU", "actions[0].hardware = 'TPU': unknown")]:
        with pytest.raises(ConfigError) as e:
            set_fields(SimConfig(), [bad])
        assert needle in str(e.value), str(e.value)


def test_an_action_pays_its_engines_fixed_costs():
    """``[[engines]]`` and an action's ``engine``: the server pays the engine's fixed costs (fields it leaves
    out: ``[inference]``'s); no engine books exactly as before; an unknown engine is refused naming the field;
    the default scenario's hash (its cached runs) is unchanged by the schema."""
    base = SimConfig().validate()
    big = {"name": "cloud_large", "model": "llama-3.1-70b", "site": "cloud", "hardware": "H100-SXM", "n_gpus": 8,
           "bg_max_seqs": 768, "bg_step_seqs": 96}
    cfg = config_from_dict({"engines": [{"name": "graphs", "step_overhead_s_per_layer": 2e-5}],
                            "actions": [{**big, "engine": "graphs"}]})
    p0, p1 = make_params(base), make_params(cfg)
    layers = cfg.model("llama-3.1-70b").n_layers
    assert float(p1.srv_step_fixed_s[-1]) == pytest.approx(layers * 2e-5)
    assert float(p1.srv_step_fixed_s[-1]) < float(p0.srv_step_fixed_s[-1])
    assert float(p1.srv_tp_fixed_s[-1]) == float(p0.srv_tp_fixed_s[-1])      # left out: [inference]'s
    for k in ("srv_step_fixed_s", "srv_tp_fixed_s", "srv_prefill_overhead_s"):
        assert (getattr(p1, k)[:-1] == getattr(p0, k)[:-1]).all()
    with pytest.raises(ConfigError, match=r"actions\[2\].engine = 'trt': unknown; allowed: graphs, or absent"):
        config_from_dict({"engines": [{"name": "graphs"}], "actions": [{**big, "engine": "trt"}]})
    with pytest.raises(ConfigError, match=r"engines\[0\].tp_sync_s_per_layer = 1.0 is out of range"):
        config_from_dict({"engines": [{"name": "graphs", "tp_sync_s_per_layer": 1.0}]})
    from jaxsim.config import config_hash, config_to_dict
    assert "engines" not in config_to_dict(base) and "engine" not in config_to_dict(base)["actions"][0]
    assert config_hash(base) == config_hash(config_from_dict({}))
