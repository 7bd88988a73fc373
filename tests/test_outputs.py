"""What a run writes for a paper: per-task and per-slot tables whose numbers agree with each other and with the
server state (delay parts summing to the delay, loads and refusals matching each server's slot state)."""

import csv
from collections import defaultdict

import numpy as np
import pytest

from experiment.files import save_config
from scripts.studies import montecarlo

from conftest import tiny_config

TASK_COLUMNS = ["episode", "slot", "user", "cell", "task_type", "prompt_tokens", "output_tokens", "budget_s",
                "min_quality", "uplink_sinr_db", "downlink_sinr_db", "uplink_rate_bps", "downlink_rate_bps", "action",
                "server", "server_load_seqs", "queue_position", "refused", "delay_s", "uplink_s", "backhaul_s",
                "wait_s", "prefill_s", "decode_s", "downlink_s", "refusal_s", "quality", "success", "reward"]
SLOT_COLUMNS = ["episode", "slot", "server", "action", "cell", "running", "queued", "admitted", "refused", "bg_seqs",
                "mean_context_tokens"]


def read(path):
    with open(path) as f:
        r = csv.DictReader(f)
        return r.fieldnames, list(r)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """greedy (a device policy), knn (a host policy) and edge_only on a tiny scenario whose edge servers queue and
    refuse: an L40S with 7.4 GB (room for the 3B's weights and a few sequences' KV), 16 tracked sequences a
    server and a task in 90% of user-slots."""
    import dataclasses
    from jaxsim.config import InferenceConfig, TrafficConfig
    tmp = tmp_path_factory.mktemp("outputs")
    base = tiny_config()
    hw = tuple(dataclasses.replace(h, mem_bytes=7.4e9) if h.name == "L40S" else h for h in base.hardware)
    cfg = tiny_config(hardware=hw, inference=InferenceConfig(max_server_seqs=16), traffic=TrafficConfig(p_task=0.9))
    save_config(cfg, tmp / "c.toml")
    out = tmp / "run"
    assert montecarlo.main(["--config", str(tmp / "c.toml"), "--policies", "greedy,knn,edge_only",
                            "--episodes", "2", "--out", str(out)]) == 0
    return cfg, out


@pytest.mark.parametrize("policy", ["greedy", "knn", "edge_only"])
def test_task_and_slot_tables_agree_with_each_other(run, policy):
    cfg, out = run
    cols, tasks = read(out / "policies" / policy / "tasks.csv")
    assert cols == TASK_COLUMNS
    scols, slots = read(out / "policies" / policy / "slots.csv")
    assert scols == SLOT_COLUMNS
    n_servers = len(slots) // (2 * cfg.episode.horizon)
    assert len(slots) == 2 * cfg.episode.horizon * n_servers and n_servers == 2 * 1 + 2      # 2 edge, 2 cloud
    f = lambda r, k: float(r[k])                                                              # noqa: E731
    for r in tasks:                                         # the delay parts sum to the delay
        parts = sum(f(r, k) for k in ("uplink_s", "backhaul_s", "wait_s", "prefill_s", "decode_s", "downlink_s",
                                      "refusal_s"))
        assert parts == pytest.approx(f(r, "delay_s"), rel=1e-4, abs=1e-5)
        assert (r["refused"] == "1") == (r["queue_position"] == "-1")
        assert f(r, "uplink_rate_bps") > 0 and f(r, "downlink_rate_bps") > 0 and 0 <= int(r["cell"]) < 2
        assert f(r, "budget_s") == next(t.budget_s for t in cfg.traffic.task_types if t.name == r["task_type"])
    state = {(int(s["episode"]), int(s["slot"]), int(s["server"])): s for s in slots}
    by_server = defaultdict(list)
    for r in tasks:
        by_server[(int(r["episode"]), int(r["slot"]), int(r["server"]))].append(r)
    for key, rs in by_server.items():
        s = state[key]
        accepted = [r for r in rs if r["refused"] == "0"]
        # the slot's refusals on this server, and the load each task met at decision time: the server's own and
        # background sequences before the slot's new ones joined
        assert int(s["refused"]) == len(rs) - len(accepted)
        before = int(s["running"]) + int(s["queued"]) - len(accepted) + int(s["bg_seqs"])
        assert all(int(r["server_load_seqs"]) == before for r in rs), (key, before, [r["server_load_seqs"] for r in rs])
        # the new tasks join the queue's tail in user order: consecutive places
        q = [int(r["queue_position"]) for r in sorted(accepted, key=lambda r: int(r["user"]))]
        assert q == list(range(q[0], q[0] + len(q))) if q else True
        assert int(s["admitted"]) <= int(s["running"])
    # the tight servers did queue and refuse somewhere (the checks above saw more than empty servers)
    if policy == "edge_only":
        assert any(int(s["refused"]) > 0 for s in slots) and any(int(s["queued"]) > 0 for s in slots)
    assert np.mean([int(s["running"]) > 0 for s in slots]) > 0.2


def test_written_files_follow_the_umask(tmp_path):
    from experiment import files
    files.atomic_write_bytes(tmp_path / "x.csv", b"a\n")
    assert (tmp_path / "x.csv").stat().st_mode & 0o777 == 0o666 & ~files._UMASK
