"""The cross-regime ICL table (scripts.studies.icl_regimes): its flags, its table, and the pieces it measures that are
new to the policy (records per action, the blend rule). The table itself is measured by running the script."""
import numpy as np
import pytest

from icl.policy import ICLConfig, ICLPolicy, value_estimates, value_from_records
from icl.pool import ExperiencePool
from icl.prompt import BASE_FEATURES
from scripts.studies import icl_regimes


@pytest.mark.parametrize("argv,needle", [
    (["--scenarios", "heavy"], "--scenarios: unknown ['heavy']"),
    (["--pools", "warm"], "--pools: unknown ['warm']"),
    (["--models", "gpt-9"], "--models: unknown ['gpt-9']"),
    (["--queries", "0"], "--queries = 0: allowed >= 1"),
])
def test_bad_flags_exit_2_naming_the_flag(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        icl_regimes.parse_args(argv)
    assert e.value.code == 2 and needle in capsys.readouterr().err


def _m(r):
    return {"mean_reward": r, "decisions_per_s": 2.0}


def test_table_rows_and_gap():
    refs = {"knn": _m(0.1), "twin": _m(0.2), "greedy": _m(0.3), "best action": _m(0.4),
            "edge_only": _m(0.05), "cloud_only": _m(0.25)}
    table = {("default", "random", "m"): {"backend": "flax", "pool_records": 10, "value": _m(0.22),
                                          "expected": _m(0.1), "blend": _m(0.27), "refs": refs,
                                          "actions": ["edge", "cloud"]}}
    args = icl_regimes.parse_args([])
    text = icl_regimes.render(table, args)
    row = [line for line in text.splitlines() if line.startswith("| default")][0]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:8] == ["default", "random (10)", "m (flax)", "0.220", "0.100", "0.270", "-", "0.100"]
    assert cells[-1] == "+0.020"              # best ICL (blend 0.27) - max(twin 0.2, best single 0.25)


def test_records_per_action_never_fall_to_one():
    assert ICLConfig(shots=6).records_per_action(3) == 2          # the default presets: as before
    assert ICLConfig(shots=6).records_per_action(4) == 2          # was 6 // 4 = 1
    assert ICLConfig(shots=12).records_per_action(4) == 3
    assert ICLConfig(shots=0).records_per_action(4) == 0
    assert ICLConfig(shots=6, shots_per_action=5).records_per_action(4) == 5


def filled_pool(n_actions: int, n: int, rng) -> ExperiencePool:
    """n random records over two task types and every action."""
    pool = ExperiencePool(len(BASE_FEATURES) + n_actions, 64, 2.0)
    pool.add(rng.uniform(1, 50, (n, len(BASE_FEATURES) + n_actions)).astype(np.float32), rng.integers(0, 2, n),
             rng.integers(0, n_actions, n), rng.uniform(-1, 1, n), np.zeros(n, int), np.zeros(n, int))
    return pool


def test_blend_is_the_mean_of_the_models_contrast_value_and_the_twins(tiny):
    A = len(tiny.actions)
    rng = np.random.default_rng(1)
    pool = filled_pool(A, 30, rng)

    class NoModel:                               # never asked: action_values works from given log-probs
        name, n_params, tokenizer = "none", 0, None

    pol = ICLPolicy(tiny, ICLConfig(value_rule="blend"), lm=NoModel(), pool=pool)
    feats = rng.uniform(1, 50, (5, len(BASE_FEATURES) + A)).astype(np.float32)
    demos = pol.select(feats, np.zeros(5, int))
    lp = np.log(rng.dirichlet(np.ones(10), (5, A)))
    twin = np.stack([value_from_records(pool, d) for d in demos])
    assert np.allclose(pol.action_values(lp, demos), 0.5 * value_estimates(lp, "contrast") + 0.5 * twin)


def test_value_prompt_fits_the_token_budget_dropping_the_least_relevant_records(tiny):
    A = len(tiny.actions)
    rng = np.random.default_rng(2)
    pool = filled_pool(A, 40, rng)

    class CharTokens:                            # one token per character
        name, n_params, tokenizer = "chars", 0, None

        def encode(self, text, special=True):
            return list(range(len(text)))

    feat = rng.uniform(1, 50, len(BASE_FEATURES) + A).astype(np.float32)
    wide = ICLPolicy(tiny, ICLConfig(shots_per_action=4), lm=CharTokens(), pool=pool)
    per = wide.select(feat[None], np.zeros(1, int))[0]
    full = wide.value_prompt(feat, 0, per)
    assert wide.stats.get("dropped_demos", 0) == 0
    budget = len(wide.values.prefix) + len(full) - 1          # one character too many
    tight = ICLPolicy(tiny, ICLConfig(shots_per_action=4, max_prompt_tokens=budget), lm=CharTokens(), pool=pool)
    cut = tight.value_prompt(feat, 0, per)
    assert len(tight.values.prefix) + len(cut) <= budget and tight.summary()["dropped_demos"] == 1
    assert cut == full.split("\n", 1)[1]           # the first action's least relevant record (the first line) went
