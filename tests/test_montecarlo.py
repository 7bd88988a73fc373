"""The Monte Carlo command end to end on a tiny scenario."""

import csv
import json
import os

from experiment.files import save_config
from experiment.runs import config_hash
from jaxsim.config import TopologyConfig, load_config
from scripts.studies import montecarlo

from conftest import tiny_config


def test_montecarlo_run_and_resume(tmp_path, capsys):
    cfg_path = tmp_path / "tiny.toml"
    save_config(tiny_config(), cfg_path)
    out = tmp_path / "run"
    args = ["--config", str(cfg_path), "--episodes", "3", "--policies", "random,edge_only,greedy,oracle",
            "--out", str(out), "--chunk", "2"]
    assert montecarlo.main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["policies"]) == {"random", "edge_only", "greedy", "oracle"}
    s = summary["policies"]["oracle"]
    for k in ("reward", "service_quality", "delay_s", "quality"):
        assert set(s[k]) == {"mean", "ci95", "n", "t95"} and s[k]["n"] == 3
        assert abs(s[k]["t95"] - 4.3027) < 1e-4                   # Student t, 2 degrees of freedom
    # paired differences of every pair on the same episodes: a listed after b, from the per-episode values
    paired = summary["paired"]
    assert len(paired) == 6 and set(paired["oracle - greedy"]) == {"reward", "service_quality"}
    d = paired["oracle - random"]["reward"]
    with open(out / "policies" / "oracle" / "episodes.csv") as f:
        a = [float(r["reward"]) for r in csv.DictReader(f)]
    with open(out / "policies" / "random" / "episodes.csv") as f:
        b = [float(r["reward"]) for r in csv.DictReader(f)]
    assert d["n"] == 3 and abs(d["mean"] - (sum(a) - sum(b)) / 3) < 1e-5
    assert abs(d["mean"] - (s["reward"]["mean"] - summary["policies"]["random"]["reward"]["mean"])) < 1e-12
    assert set(s["per_type"]) == {"chat", "summarise", "code", "math", "image"}
    with open(out / "policies" / "greedy" / "tasks.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and {"delay_s", "uplink_s", "wait_s", "decode_s", "action", "task_type"} <= set(rows[0])
    with open(out / "policies" / "greedy" / "episodes.csv") as f:
        assert len(list(csv.DictReader(f))) == 3
    text = capsys.readouterr().out
    assert "oracle" in text and "gap to oracle" in text
    # a rerun skips finished policies and reproduces the same summary
    before = (out / "policies" / "random" / "summary.json").read_text()
    assert montecarlo.main(args) == 0
    assert "random: already in" in capsys.readouterr().out
    assert (out / "policies" / "random" / "summary.json").read_text() == before
    assert json.loads((out / "summary.json").read_text())["paired"] == paired
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]


def test_montecarlo_bad_input(tmp_path, capsys):
    assert montecarlo.main(["--policies", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "--policies: 'nope' unknown; allowed: random" in capsys.readouterr().err
    assert montecarlo.main(["--episodes", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--episodes = 0" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_interrupted_host_policy_resumes_to_the_same_result(tmp_path, monkeypatch):
    """kNN stopped in its second wave resumes from the saved first wave and ends bit-identical."""
    import numpy as np
    from icl.policy import KNNPolicy

    cfg_path = tmp_path / "tiny.toml"
    save_config(tiny_config(), cfg_path)
    args = ["--config", str(cfg_path), "--episodes", "4", "--batch-episodes", "2", "--policies", "knn",
            "--select", "nearest", "--shots", "3", "--epsilon", "0.3"]
    assert montecarlo.main(args + ["--out", str(tmp_path / "whole")]) == 0

    calls = {"n": 0}
    observe = KNNPolicy.observe

    def failing(self, *a, **k):
        calls["n"] += 1
        if calls["n"] > tiny_config().episode.horizon:         # first slot of the second wave
            raise KeyboardInterrupt
        return observe(self, *a, **k)

    monkeypatch.setattr(KNNPolicy, "observe", failing)
    out = tmp_path / "cut"
    try:
        montecarlo.main(args + ["--out", str(out)])
    except KeyboardInterrupt:
        pass
    state = json.loads((out / "policies" / "knn" / "partial" / "state.json").read_text())
    assert state["episodes_done"] == 2 and not (out / "policies" / "knn" / "summary.json").exists()
    monkeypatch.setattr(KNNPolicy, "observe", observe)
    assert montecarlo.main(args + ["--out", str(out)]) == 0
    for f in ("tasks.csv", "episodes.csv", "learning.csv"):
        a = (tmp_path / "whole" / "policies" / "knn" / f).read_text()
        b = (out / "policies" / "knn" / f).read_text()
        if f == "learning.csv":      # wall-clock rates differ; compare the rest
            strip = lambda t: [r.split(",")[:2] for r in t.splitlines()]  # noqa: E731
            assert strip(a) == strip(b)
        else:
            assert a == b
    # the learning log also as TensorBoard events: one reward per episode, equal to learning.csv's
    from experiment.events import read_scalars
    ev = read_scalars(str(tmp_path / "whole" / "policies" / "knn" / "tensorboard"))
    rows = [r.split(",") for r in (tmp_path / "whole" / "policies" / "knn" / "learning.csv").read_text().splitlines()]
    col = rows[0].index("reward")
    assert [s for s, _ in ev["host/reward"]] == [0, 1, 2, 3]
    np.testing.assert_allclose([v for _, v in ev["host/reward"]], [float(r[col]) for r in rows[1:]], rtol=1e-6)
    np.testing.assert_equal(json.loads((out / "policies" / "knn" / "summary.json").read_text())["reward"],
                            json.loads((tmp_path / "whole" / "policies" / "knn" / "summary.json").read_text())["reward"])


def test_a_run_folder_is_bound_to_its_config_and_options(tmp_path, capsys):
    """A rerun into a folder of another config (or seed, episode count) is refused before any compute, naming
    the folder and both sides; the same config and options resume; --fresh replaces the folder whole.
    (One compile: greedy on one config; the second policy of the first run is a copy of greedy's folder.)"""
    import shutil
    mine, other = tmp_path / "mine.toml", tmp_path / "other.toml"
    save_config(tiny_config(), mine)
    save_config(tiny_config(topology=TopologyConfig(n_cells=1, users_per_cell=2)), other)
    out = tmp_path / "r"
    common = ["--episodes", "2", "--out", str(out)]
    assert montecarlo.main(["--config", str(mine), "--policies", "greedy", *common]) == 0
    shutil.copytree(out / "policies" / "greedy", out / "policies" / "edge_only")    # as if run beside it
    before = {p: (out / p).read_bytes() for p in ("config.toml", "run.json", "summary.json")}
    capsys.readouterr()
    # another config: refused (no compute, nothing written), naming both hashes and the folder
    assert montecarlo.main(["--config", str(other), "--policies", "greedy", *common]) == 2
    err = capsys.readouterr().err
    h_mine, h_other = config_hash(tiny_config()), config_hash(load_config(str(other)))
    assert err.count("\n") == 1 and f"--out {str(out)!r}" in err and f"config {h_mine} vs {h_other}" in err, err
    assert "--fresh" in err
    assert {p: (out / p).read_bytes() for p in before} == before
    # another seed or episode count: refused too
    assert montecarlo.main(["--config", str(mine), "--policies", "greedy", *common, "--seed", "1"]) == 2
    assert "seed 0 vs 1" in capsys.readouterr().err
    assert montecarlo.main(["--config", str(mine), "--policies", "greedy", "--episodes", "3", "--out", str(out)]) == 2
    assert "episodes 2 vs 3" in capsys.readouterr().err
    # the same config and options: finished policies are skipped
    assert montecarlo.main(["--config", str(mine), "--policies", "greedy,edge_only", *common]) == 0
    o = capsys.readouterr().out
    assert "greedy: already in" in o and "edge_only: already in" in o
    # --fresh: the folder replaced whole, nothing of the earlier run left
    assert montecarlo.main(["--config", str(mine), "--policies", "greedy", *common, "--seed", "1", "--fresh"]) == 0
    assert json.loads((out / "run.json").read_text())["seed"] == 1
    assert sorted(os.listdir(out / "policies")) == ["greedy"]
    assert not [f for f in os.listdir(tmp_path) if ".replaced-" in f]


def test_binding_compares_only_the_options_a_run_uses():
    from experiment.runs import binding_conflicts, merged_options
    icl = {"shots": 6, "select": "nearest"}
    old = {"config_hash": "h", "seed": 0, "episodes": 4,
           "options": {"icl": icl, "pool": None, "batch_episodes": 2, "checkpoint": None}}
    device_only = {"config_hash": "h", "seed": 0, "episodes": 4,
                   "options": {"icl": None, "pool": None, "batch_episodes": None, "checkpoint": "ckpt"}}
    assert binding_conflicts(old, device_only) == []                   # a device policy beside the kNN results
    merged = merged_options(old, device_only)
    assert merged == {"icl": icl, "pool": None, "batch_episodes": 2, "checkpoint": "ckpt"}   # still bound to both
    other_shots = {**old, "options": {**old["options"], "icl": {**icl, "shots": 3}}}
    assert binding_conflicts({**old, "options": merged}, other_shots) == ["icl.shots 6 vs 3"]
    assert binding_conflicts(old, {**old, "options": {**old["options"], "checkpoint": "b"}}) == []
    assert binding_conflicts({**old, "options": merged}, {**device_only, "options": {**device_only["options"],
                                                           "checkpoint": "b"}}) == ["checkpoint 'ckpt' vs 'b'"]


def test_an_interrupted_fresh_leaves_the_old_folder_whole_or_none(tmp_path, monkeypatch):
    import shutil
    from experiment import runs
    run = tmp_path / "r"
    (run / "policies" / "greedy").mkdir(parents=True)
    (run / "run.json").write_text("{}")
    real = shutil.rmtree
    monkeypatch.setattr(runs.shutil, "rmtree", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        runs.replace_run_dir(str(run))
    except KeyboardInterrupt:
        pass
    assert not run.exists()                                    # moved aside in one rename, not half deleted
    assert [f for f in os.listdir(tmp_path) if f.startswith(".r.replaced-")]
    monkeypatch.setattr(runs.shutil, "rmtree", real)
    run.mkdir()
    runs.replace_run_dir(str(run))                             # the next --fresh removes the leftover too
    assert os.listdir(tmp_path) == []


def test_fresh_never_removes_a_folder_of_other_files(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert montecarlo.main(["--policies", "random", "--episodes", "1", "--out", str(tmp_path), "--fresh"]) == 2
    assert "holds files that no run writes (notes.txt)" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_plugin_from_the_current_directory_or_a_file_path(tmp_path, monkeypatch, capsys):
    """--plugin NAME finds a module in the current directory (the installed command does not put it on the
    path), --plugin ./file.py imports a file; a failing plugin is one clear line, exit 2. The runs stop at
    --episodes 0, after the policy names are checked: the plugins' policies were registered."""
    import sys
    from experiment import policy_names
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    body = "import jax.numpy as jnp\nfrom experiment import register\nregister({!r}, lambda k, o, p: jnp.zeros(o.mask.shape, jnp.int32))\n"
    (tmp_path / "local_plugin_mod.py").write_text(body.format("from_local_module"))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "plugin_file.py").write_text(body.format("from_plugin_file"))
    (tmp_path / "broken_plugin.py").write_text("x = 1\ny = 1 / 0\n")
    for plugin, name in (("local_plugin_mod", "from_local_module"), ("./sub/plugin_file.py", "from_plugin_file")):
        assert montecarlo.main(["--plugin", plugin, "--policies", name, "--episodes", "0"]) == 2
        err = capsys.readouterr().err
        assert "--episodes = 0" in err, err                    # past the policy names: registered
        assert name in policy_names(tiny_config())
    assert montecarlo.main(["--plugin", "broken_plugin.py", "--policies", "random", "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--plugin 'broken_plugin.py': cannot be imported (ZeroDivisionError at " \
        "broken_plugin.py:2: division by zero)" in err, err
    assert montecarlo.main(["--plugin", "./no_such_plugin.py", "--policies", "random"]) == 2
    assert "--plugin './no_such_plugin.py': no such file" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
