"""The server study (scripts.studies.icl_server): its flags, its table, and that docs/icl.md shows what its committed
cells say. The cells themselves are measured by running the script against llama.cpp's server."""
import os

import pytest

from experiment.files import read_block_file
from scripts.studies import icl_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("argv,needle", [
    (["--scenarios", "edge_tiers"], "--scenarios: unknown ['edge_tiers']"),
    (["--models", "gpt-9"], "--models: unknown ['gpt-9']"),
    (["--flax-models", "gpt-9"], "--flax-models: unknown ['gpt-9']"),
    (["--queries", "0"], "--queries = 0: allowed >= 1"),
])
def test_bad_flags_exit_2_naming_the_flag(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        icl_server.parse_args(argv)
    assert e.value.code == 2 and needle in capsys.readouterr().err


def test_table_rows_with_and_without_the_flax_reference():
    cell = {"mean_reward": 0.25, "floor_share": 0.034, "decisions_per_s": 1.1, "knn_value_mean_reward": 0.29,
            "best_single_site_reward": 0.22, "greedy_reward": 0.28}
    table = {("default", "a"): {**cell, "flax_mean_reward": 0.26, "flax_decisions_per_s": 4.3, "flax_agreement": 0.975,
                                "grade_logprob_median_abs_diff": 0.045},
             ("loaded", "b"): cell}
    text = icl_server.render(table, ["loaded-c"], icl_server.parse_args([]))
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in text.splitlines() if ln.startswith("| default")
            or ln.startswith("| loaded")]
    assert rows[0] == ["default", "a", "0.250", "3.4%", "1.1", "0.260", "4.3", "98%", "0.045", "0.290", "0.220",
                       "0.280"]
    assert rows[1][5:9] == ["-"] * 4
    assert "Not run yet: loaded-c." in text


def test_docs_show_the_committed_cells(capsys):
    """docs/icl.md's block is what the committed cells render to, every cell there (no server started)."""
    out = os.path.join(ROOT, "data", "icl_server")
    doc = read_block_file(os.path.join(ROOT, "docs", "icl.md"), icl_server.START, icl_server.END)
    res = icl_server.main(["--only-cached", "--out", out])
    assert "Not run yet" not in res["text"] and len(res["table"]) == 6
    assert res["text"].strip() in doc


def test_a_cell_to_run_without_its_weights_exits_2_before_any_compute(tmp_path, monkeypatch, capsys):
    """A model whose weights are not installed (or no server) is refused before any bench runs; cached cells need
    neither."""
    from scripts.bench import icl as bench
    monkeypatch.setattr(bench, "main", lambda *a, **k: pytest.fail("the bench ran"))
    monkeypatch.setenv("GENAI_EDGE_LAB_CACHE", str(tmp_path / "models"))
    from icl.llm import registry
    monkeypatch.setattr(registry, "package_file", lambda pkg, name: None)      # nothing installed
    with pytest.raises(SystemExit) as e:
        icl_server.main(["--out", str(tmp_path / "cells"), "--models", "qwen2.5-coder-1.5b", "--scenarios", "default"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and ("--models: model 'qwen2.5-coder-1.5b'" in err or "make install-serve" in err), err
