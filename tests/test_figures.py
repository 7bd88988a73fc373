"""Every figure script and the comparison table, end to end on a tiny configuration with a tiny
random-weight LLM: PNGs and their data written, runs cached, tables generated."""

import csv
import os

import pytest

from experiment.files import update_block
from experiment.study import Study
from scripts.figures import reproduce
from scripts.figures.claims import END as CLAIMS_END, START as CLAIMS_START
from scripts.figures.compare_table import END, START

from test_llm_model import tiny_lm


@pytest.mark.long
def test_reproduce_tiny(tmp_path, monkeypatch):
    lm = tiny_lm()
    orig = Study.__init__

    def tiny_init(self, *a, **k):
        orig(self, *a, **k)
        self.tiny = True
    monkeypatch.setattr(Study, "__init__", tiny_init)
    out = tmp_path / "results"
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold\n{END}\nmid\n{CLAIMS_START}\nold claims\n{CLAIMS_END}\nrest\n")
    figs = tmp_path / "figures"
    done = reproduce.main(["--out", str(out), "--model", "tiny", "--figures", str(figs), "--readme", str(readme)], lm=lm)
    for png in reproduce.FIGURES:
        assert (figs / f"{png}.png").read_bytes() == (out / f"{png}.png").read_bytes()
    text = readme.read_text()
    assert "old" not in text and done["comparison table"] in text and done["paper's claims"] in text
    for png in ("fig1_reward", "fig2_quality", "fig3_shots", "fig4_explore", "fig5_size", "fig6_pertype"):
        assert (out / f"{png}.png").stat().st_size > 5000
    for data in ("fig1_reward", "fig2_quality", "fig3_shots", "fig3_pool", "fig4_explore", "fig5_llm_size",
                 "fig5_network_size", "fig6_pertype", "comparison"):
        with open(out / f"{data}.csv") as f:
            assert len(list(csv.reader(f))) > 2, data
    table = done["comparison table"]
    for method in ("random", "edge_only", "greedy", "knn", "knn_value", "icl tiny", "ppo", "oracle"):
        assert f"| {method}" in table
    claims = done["paper's claims"]
    assert (out / "claims.md").read_text() == claims
    lines = [ln for ln in claims.splitlines() if ln.startswith("- *")]
    assert len(lines) == 5
    for ln in lines:
        assert any(v in ln for v in ("**supported**", "**not supported**", "**direction only**", "**mixed**",
                                     "**not tested**")), ln
    n_runs = len(os.listdir(out / "runs"))
    reproduce.main(["--out", str(out), "--model", "tiny", "--figures", ""], lm=lm)   # all cached: no new run
    assert len(os.listdir(out / "runs")) == n_runs
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold\n{END}\nrest\n")
    update_block(str(readme), table, START, END)
    text = readme.read_text()
    assert "old" not in text and "| oracle" in text and text.endswith(f"{END}\nrest\n")
