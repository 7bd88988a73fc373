"""The slot profiler (scripts.bench.profile_sim): every kernel of the traced rollout lands in a stage."""

from scripts.bench import profile_sim


def test_profile_puts_the_kernels_in_their_stages(capsys):
    res = profile_sim.main(["--scenario", "tiny", "--episodes", "8", "--top", "5"])
    assert res["bench"] == "sim_profile" and res["kernel_us_per_episode_slot"] > 0
    assert abs(sum(res["stages"].values()) - 1.0) < 1e-3
    # the named stages carry the time: the channel (XLA may fuse the fading draw into the rates) and the servers
    assert {"schedule", "enqueue", "policy"} <= set(res["stages"]) and {"fading", "rates"} & set(res["stages"])
    assert res["stages"].get("other", 0.0) < 0.5
    assert len(res["kernels"]) == 5 and all(0 < share <= 1 for _, share, _ in res["kernels"])
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith('{"bench": "sim_profile"')


def test_stage_of_takes_the_innermost_scope():
    assert profile_sim.stage_of("jit(_run_batch)/vmap()/while/body/closed_call/serve/schedule/sort") == "schedule"
    assert profile_sim.stage_of("jit(f)/vmap(new_slot)/fading/log") == "fading"
    assert profile_sim.stage_of("<- jit(f)/serve/book/advance/select_n") == "advance"
    assert profile_sim.stage_of("jit(f)/add") == "other"
    ops = profile_sim.kernel_ops('  %a.1 = f32[2] add(%p, %q), metadata={op_name="jit(f)/serve/enqueue/add"}\n'
                                 '  %w = s32[2] fusion(%a.1, %c), kind=kLoop, calls=%comp\n')
    assert ops == {"a.1": "jit(f)/serve/enqueue/add", "w": "<- jit(f)/serve/enqueue/add"}
