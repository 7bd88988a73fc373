"""Scale-out: two real processes on loopback, streamed and resumable chunks, memory-sized chunks,
cluster settings."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from jaxsim import distributed, rollout as rollout_mod
from experiment.files import save_config
from scripts.studies import montecarlo

from conftest import tiny_config

RUN_FIELDS = ("wall_s", "decisions_per_s")          # timing: differs between any two runs


def _policies(run_dir):
    s = json.loads((run_dir / "summary.json").read_text())["policies"]
    return {name: {k: v for k, v in p.items() if k not in RUN_FIELDS} for name, p in s.items()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.long
def test_two_processes_on_loopback_write_the_single_process_summary(tmp_path):
    """Two CPU processes (JAX distributed runtime, gloo collectives) of two CPU devices each shard the
    episodes between them; process 0 writes exactly the summary one process writes."""
    cfg_path = tmp_path / "tiny.toml"
    save_config(tiny_config(), cfg_path)
    common = ["--config", str(cfg_path), "--episodes", "6", "--policies", "greedy,oracle", "--chunk", "4"]
    assert montecarlo.main(common + ["--out", str(tmp_path / "one")]) == 0

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_FLAGS", "SLURM_", "JAX_COORD"))}
    env["JAX_PLATFORMS"] = "cpu"
    cmd = [sys.executable, "-m", "scripts.studies.montecarlo", *common, "--out", str(tmp_path / "two"),
           "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--cpu-devices", "2"]
    procs = [subprocess.Popen(cmd + ["--process-id", str(i)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    try:
        logs = [p.communicate(timeout=420)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)
    meta = json.loads((tmp_path / "two" / "run.json").read_text())
    assert meta["process_count"] == 2 and meta["device_count"] == 4
    assert _policies(tmp_path / "two") == _policies(tmp_path / "one")
    for name in ("greedy", "oracle"):
        for f in ("episodes.csv", "tasks.csv"):
            assert (tmp_path / "two" / "policies" / name / f).read_bytes() == \
                (tmp_path / "one" / "policies" / name / f).read_bytes()


def test_streamed_run_resumes_after_interruption_to_the_same_summary(tmp_path, monkeypatch):
    """Per-episode sums reduced on the device (no per-task arrays), saved per chunk: a run killed
    after its first chunk resumes from it and ends with the uninterrupted run's summary; the
    streamed summary equals the one computed from full per-task outputs."""
    cfg_path = tmp_path / "tiny.toml"
    save_config(tiny_config(), cfg_path)
    common = ["--config", str(cfg_path), "--episodes", "7", "--policies", "greedy", "--chunk", "3"]
    assert montecarlo.main(common + ["--out", str(tmp_path / "whole"), "--per-task", "off"]) == 0
    assert not (tmp_path / "whole" / "policies" / "greedy" / "tasks.csv").exists()
    assert not (tmp_path / "whole" / "policies" / "greedy" / "partial").exists()

    from experiment import runs
    real = runs.rollout

    def dies_after_first_chunk(*a, on_chunk=None, **kw):
        def save_then_die(first, out):
            on_chunk(first, out)
            raise KeyboardInterrupt
        return real(*a, on_chunk=save_then_die, **kw)
    monkeypatch.setattr(runs, "rollout", dies_after_first_chunk)
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        montecarlo.main(common + ["--out", str(cut), "--per-task", "off"])
    assert os.listdir(cut / "policies" / "greedy" / "partial") == ["chunk-000000000-3.npz"]
    monkeypatch.setattr(runs, "rollout", real)
    seen = []
    monkeypatch.setattr(runs, "rollout", lambda *a, **kw: seen.append(kw["first_episode"]) or real(*a, **kw))
    assert montecarlo.main(common + ["--out", str(cut), "--per-task", "off"]) == 0
    assert seen == [3]                                    # resumed after the saved chunk
    assert _policies(cut) == _policies(tmp_path / "whole")

    assert montecarlo.main(common + ["--out", str(tmp_path / "full"), "--per-task", "on"]) == 0
    a, b = _policies(tmp_path / "full")["greedy"], _policies(tmp_path / "whole")["greedy"]
    for k in ("reward", "service_quality", "delay_s", "quality"):
        assert a[k]["mean"] == pytest.approx(b[k]["mean"], rel=1e-6)
        assert a[k]["n"] == b[k]["n"] == 7
    assert a["action_share"] == pytest.approx(b["action_share"])


def test_auto_chunk_fits_the_free_memory(tiny, monkeypatch):
    from baselines.heuristics import greedy_policy
    from jaxsim.params import make_params
    p = make_params(tiny)
    dev_b, host_b = rollout_mod.bytes_per_episode(p, greedy_policy, None, True)
    assert dev_b > host_b > 0
    # per-task outputs: [H, U] floats per field, all of them come back to the host
    assert host_b >= tiny.episode.horizon * tiny.topology.n_cells * tiny.topology.users_per_cell * 4
    nd = rollout_mod.jax.device_count()
    monkeypatch.setattr(rollout_mod, "device_memory_available_bytes", lambda d: int(25.5 * dev_b / 0.4))
    monkeypatch.setattr(rollout_mod, "host_memory_available_bytes", lambda: 1 << 40)
    assert rollout_mod.auto_chunk(p, greedy_policy, None, True, n_episodes=10_000) == 25 * nd
    assert rollout_mod.auto_chunk(p, greedy_policy, None, True, n_episodes=10) == 10    # small: one batch
    monkeypatch.setattr(rollout_mod, "host_memory_available_bytes", lambda: int(5.5 * host_b * nd / 0.4))
    assert rollout_mod.auto_chunk(p, greedy_policy, None, True, n_episodes=10_000) == 5 * nd
    # a 10^6-episode streamed run only brings per-episode sums back: a few hundred bytes each
    from jaxsim.metrics import EpisodeStats
    _, stats_b = rollout_mod.bytes_per_episode(p, greedy_policy, None, False, EpisodeStats(5, 3))
    assert stats_b < 256


def test_cluster_spec_from_flags_and_environment():
    assert not distributed.cluster_spec(env={}).multi_process
    s = distributed.cluster_spec("10.0.0.1:1234", 4, 3, env={})
    assert s.multi_process and (s.coordinator, s.num_processes, s.process_id) == ("10.0.0.1:1234", 4, 3)
    s = distributed.cluster_spec(env={"JAX_COORDINATOR_ADDRESS": "h:99", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"})
    assert (s.coordinator, s.num_processes, s.process_id) == ("h:99", 2, 1)
    assert distributed.cluster_spec(env={"SLURM_NTASKS": "8", "SLURM_PROCID": "5"}).auto
    assert not distributed.cluster_spec(env={"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}).multi_process
    for bad, field in ((("h:1", 2, 2), "process_id = 2: allowed 0..1"), (("h", 2, 0), "coordinator = 'h'"),
                       (("h:1", 0, 0), "num_processes = 0"), (("h:1", None, None), "must be given together")):
        with pytest.raises(distributed.ClusterError, match=field):
            distributed.cluster_spec(*bad, env={})


def test_cpu_devices_are_validated_and_left_alone_once_jax_runs():
    for bad in ("0", "many", "-2"):
        with pytest.raises(distributed.ClusterError, match=f"cpu_devices = '{bad}': allowed auto or an integer"):
            distributed.set_cpu_devices(bad)
    n = distributed.jax.device_count()                  # the backend runs: the count cannot change now
    assert distributed.set_cpu_devices("auto") is None and distributed.set_cpu_devices(3) is None
    assert distributed.jax.device_count() == n
    cores = distributed.usable_cores()
    assert distributed.cpu_device_count("auto") == cores == distributed.cpu_device_count("auto", 10 ** 6)
    assert distributed.cpu_device_count("auto", 16 * 50) == 1          # the default run: compiles would dominate
    assert distributed.cpu_device_count("3", 16 * 50) == 3


def test_montecarlo_refuses_bad_cluster_flags_before_compute(tmp_path, capsys):
    out = tmp_path / "x"
    assert montecarlo.main(["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0",
                            "--out", str(out)]) == 2
    assert "coordinator = 'localhost'" in capsys.readouterr().err
    assert montecarlo.main(["--coordinator", "localhost:5", "--num-processes", "2", "--process-id", "0",
                            "--policies", "knn", "--out", str(out)]) == 2
    assert "host policies run in one process" in capsys.readouterr().err
    assert montecarlo.main(["--cpu-devices", "0", "--out", str(out)]) == 2
    assert "cpu_devices = '0': allowed auto or an integer in [1, 4096]" in capsys.readouterr().err
    assert not out.exists()


def test_gather_and_global_array_round_trip():
    x = np.arange(2 * distributed.jax.device_count() * 3, dtype=np.float32).reshape(-1, 3)
    g = distributed.global_array(x, distributed.episode_sharding())
    assert np.array_equal(distributed.gather(g), x)
