"""The Monte Carlo command end to end on a tiny scenario."""

import csv
import json
import os

from experiment.files import save_config
from scripts import montecarlo

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
        assert set(s[k]) == {"mean", "ci95", "n"} and s[k]["n"] == 3
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
