"""Malformed configs and flags: each ends in exit code 2 with the field (or flag) named, before any compute,
and leaves no run directory behind."""

import pytest

from scripts.studies import montecarlo

ACTIONS = '''
[[actions]]
replace = true
name = "e"
model = "llama-3.2-3b"
site = "edge"
hardware = "L40S"
[[actions]]
name = "c"
model = "llama-3.1-8b"
site = "cloud"
hardware = "H100-SXM"
'''
HW = '''
[[hardware]]
name = "L40S"
peak_flops = 3.62e14
mem_bw_bytes_s = 8.64e11
mem_bytes = 4.8e10
'''
TT = '''
[[traffic.task_types]]
name = "chat"
prompt_tokens = 200
output_tokens = 300
bits_per_output_token = 32
budget_s = 6.0
min_quality = 0.6
'''

CONFIGS = [
    # numbers out of range, of the wrong kind, NaN and inf: the field and the allowed range named
    ("[episode]\nslot_s = 0.0", "episode.slot_s = 0.0 is out of range: allowed [0.001, 3600]"),
    ("[episode]\nslot_s = nan", "episode.slot_s = nan: must be a number, allowed [0.001, 3600]"),
    ("[episode]\nslot_s = inf", "episode.slot_s = inf: must be finite, allowed [0.001, 3600]"),
    ("[episode]\nhorizon = 2.5", "episode.horizon = 2.5: must be an integer, allowed an integer in [1, 100000]"),
    ("[episode]\nhorizon = true", "episode.horizon = True: must be an integer"),
    ('[episode]\nhorizon = "50"', "episode.horizon = '50': must be an integer"),
    ("[topology]\nn_cells = 0", "topology.n_cells = 0 is out of range: allowed an integer in [1, 37]"),
    ("[topology]\nn_cells = 38", "topology.n_cells = 38 is out of range"),
    ("[topology]\nusers_per_cell = -1", "topology.users_per_cell = -1 is out of range"),
    ("[topology]\nisd_m = -inf", "topology.isd_m = -inf"),
    ("[topology]\nmin_dist_m = 60.0", "topology.min_dist_m = 60.0 is out of range: allowed [0, isd_m / 4] = [0, 50]"),
    ("[radio]\ncarrier_ghz = 0.1", "radio.carrier_ghz = 0.1 is out of range: allowed [0.5, 100]"),
    ("[radio]\nscs_khz = 45.0", "radio.scs_khz = 45.0: unknown; allowed: 15.0, 30.0, 60.0, 120.0"),
    ("[radio]\nbandwidth_mhz = 17.0", "radio.bandwidth_mhz = 17.0: no 3GPP N_RB entry at 30 kHz"),
    ("[radio]\nn_rb = 52", "radio.n_rb = 52 is out of range: 20 MHz at 30 kHz holds 51 RBs; allowed an integer in [1, 51]"),
    ("[radio]\nn_rb = 0", "radio.n_rb = 0 is out of range"),
    ('[radio]\nn_rb = "all"', "radio.n_rb = 'all' is out of range"),
    ('[radio]\ninterference = "some"', "radio.interference = 'some': unknown; allowed: full, activity, none"),
    ('[radio]\nallocator = ["equal"]', "radio.allocator = ['equal']: unknown; allowed: equal, proportional, min_delay"),
    ("[radio]\ninteger_rbs = 1", "radio.integer_rbs = 1: must be true or false"),
    ("[radio]\nmax_se_bps_hz = 0.0", "radio.max_se_bps_hz = 0.0 is out of range: allowed (0, inf)"),
    ("[radio]\nue_nf_db = nan", "radio.ue_nf_db = nan: must be a number, allowed [0, 30]"),
    ("[traffic]\np_task = 1.5", "traffic.p_task = 1.5 is out of range: allowed [0, 1]"),
    ("traffic = 3", "traffic: must be a table, got int"),
    ('traffic = "busy"', "traffic: must be a table, got str"),
    ("[traffic]\ntask_types = 5", "traffic.task_types: must be an array of tables"),
    (TT + TT, "traffic.task_types: duplicate name(s) ['chat']"),
    (TT.replace("budget_s = 6.0", "budget_s = 0.0"), "traffic.task_types[0].budget_s = 0.0 is out of range"),
    (TT.replace('name = "chat"', "name = 7"), "traffic.task_types[0].name = 7: must be a non-empty string"),
    (HW + HW, "hardware: duplicate name(s) ['L40S']"),
    (HW.replace("mem_bytes = 4.8e10", 'mem_bytes = "48GB"'), "hardware[0].mem_bytes = '48GB': must be a number"),
    ("hardware = 1", "hardware: must be an array of tables"),
    ("[[models]]\nname = \"m\"\nn_params = 1e9\nn_layers = 8\nn_kv_heads = 8\nhead_dim = 64\nd_model = 512\n"
     "quality = 0.5", "models[3].quality = 0.5: must be a table of task type = quality in [0, 1]"),
    ("[[models]]\nname = \"m\"\nn_params = 1e9\nn_layers = 8\nn_kv_heads = 8\nhead_dim = 64\nd_model = 512\n"
     "quality = \"good\"", "models[3].quality = 'good': must be a table"),
    ("[[models]]\nname = \"m\"\nn_params = 1e9\nn_layers = 8\nn_kv_heads = 8\nhead_dim = 64\nd_model = 512\n"
     "[models.quality]\nchat = 1.5", "models[3].quality: missing task type"),
    (ACTIONS.replace('name = "c"', 'name = "e"'), "actions: duplicate name(s) ['e']"),
    (ACTIONS.replace('site = "cloud"', 'site = "moon"'), "actions[1].site = 'moon': unknown; allowed: edge, cloud"),
    (ACTIONS.replace('hardware = "H100-SXM"', 'hardware = "TPU"'), "actions[1].hardware = 'TPU': unknown"),
    (ACTIONS.replace('hardware = "L40S"', "hardware = 3"), "actions[0].hardware = 3: unknown"),
    (ACTIONS + 'n_gpus = 0', "actions[1].n_gpus = 0 is out of range"),
    ("[inference]\neta_compute = 0.0", "inference.eta_compute = 0.0 is out of range: allowed (0, 1]"),
    ("[inference]\nprefill_attention = \"yes\"", "inference.prefill_attention = 'yes': must be true or false"),
    ("[backhaul]\nrate_bps = 0", "backhaul.rate_bps = 0 is out of range: allowed (0, 1e+13]"),
    ("[reward]\nw_miss = -1", "reward.w_miss = -1 is out of range: allowed [0, 100]"),
    ("[oracle]\nsweeps = 17", "oracle.sweeps = 17 is out of range: allowed an integer in [0, 16]"),
    ("[radio]\nbogus = 1", "radio: unknown field(s) ['bogus']"),
    ("[weather]\nrain = 1", "config: unknown section(s) ['weather']"),
    ("episode = [1, 2]", "episode: must be a table, got list"),
    ("[episode\nhorizon = 3", "is not valid TOML"),
]

FLAGS = [
    (["--episodes", "0"], "--episodes = 0: allowed an integer >= 1"),
    (["--seed", "-1"], "--seed = -1: allowed an integer >= 0"),
    (["--chunk", "0"], "--chunk = 0: allowed auto or an integer >= 1"),
    (["--chunk", "many"], "--chunk = many"),
    (["--batch-episodes", "0"], "--batch-episodes = 0"),
    (["--policies", "nope"], "--policies: 'nope' unknown; allowed: random"),
    (["--policies", ","], "--policies: no policy given"),
    (["--policies", "ppo"], "--checkpoint: policy 'ppo' needs a checkpoint directory"),
    (["--policies", "knn", "--shots", "-1"], "icl.shots = -1 is out of range"),
    (["--policies", "knn", "--epsilon", "nan"], "icl.epsilon = nan: must be a number, allowed [0, 1]"),
    (["--policies", "knn", "--select", "best"], "icl.select = 'best': unknown; allowed: random"),
    (["--policies", "knn", "--decide", "vote"], "icl.decide = 'vote': unknown; allowed: value, action, generate"),
    (["--policies", "knn", "--pool", "/nonexistent/pool"], "--pool '/nonexistent/pool': no such directory"),
    (["--config", "/nonexistent.toml"], "config file '/nonexistent.toml' does not exist"),
    (["--scenario", "heavy"], "--scenario 'heavy': unknown; allowed: default, loaded"),
    (["--scenario", "loaded", "--config", "/nonexistent.toml"], "--scenario and --config: give one of them"),
    (["--plugin", "no_such_module_xyz"], "--plugin 'no_such_module_xyz': cannot be imported"),
    (["--plugin", "./no_such_plugin.py"], "--plugin './no_such_plugin.py': no such file"),
    (["--policies", "icl", "--model", "nosuch"], "--llm-model 'nosuch': unknown; allowed: smollm2-135m, qwen2.5-coder-0.5b"),
    (["--policies", "icl", "--llm-endpoint", "localhost:8080"], "--llm-endpoint = 'localhost:8080': allowed an http"),
    (["--policies", "icl", "--llm-endpoint", "http://127.0.0.1:9/v1"], "--llm-model: the server's model name is required"),
    (["--policies", "icl", "--llm-in-flight", "0"], "--llm-in-flight = 0: allowed an integer >= 1"),
    (["--policies", "icl", "--llm-endpoint", "http://127.0.0.1:9/v1", "--llm-model", "m"],
     "--llm-endpoint http://127.0.0.1:9/v1: the server does not answer"),
    (["--cpu-devices", "0"], "cpu_devices = '0': allowed auto or an integer in [1, 4096]"),
    (["--coordinator", "nohost"], "coordinator, num_processes and process_id must be given together"),
]


def _run(tmp_path, capsys, argv, out):
    rc = montecarlo.main([*argv, "--out", str(out)])
    err = capsys.readouterr().err
    return rc, err


@pytest.mark.parametrize("toml,needle", CONFIGS)
def test_malformed_config_exits_2_naming_the_field(tmp_path, capsys, toml, needle):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    out = tmp_path / "run"
    rc, err = _run(tmp_path, capsys, ["--config", str(path), "--policies", "random", "--episodes", "1"], out)
    assert rc == 2 and needle in err, err
    assert not out.exists()


@pytest.mark.parametrize("flags,needle", FLAGS)
def test_malformed_flag_exits_2_naming_the_flag(tmp_path, capsys, flags, needle):
    out = tmp_path / "run"
    argv = flags if "--policies" in flags else [*flags, "--policies", "random"]
    rc, err = _run(tmp_path, capsys, [*argv, "--episodes", "1"] if "--episodes" not in flags else argv, out)
    assert rc == 2 and needle in err, err
    assert not out.exists()


def test_unknown_model_is_one_line_naming_the_known_models(tmp_path, capsys):
    from icl.llm.registry import MODELS
    rc, err = _run(tmp_path, capsys, ["--policies", "icl,knn", "--model", "nosuch", "--episodes", "1"], tmp_path / "run")
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: --llm-model 'nosuch': unknown; allowed: "), err
    assert all(name in err for name in MODELS) and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_unwritable_out_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    rc, err = _run(tmp_path, capsys, ["--policies", "random", "--episodes", "1"], blocker / "run")
    assert rc == 2 and "--out" in err and "is not a writable directory" in err, err


def test_at_least_forty_cases():
    assert len(CONFIGS) + len(FLAGS) + 1 >= 40
