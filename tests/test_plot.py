"""Figures of any run (scripts.figures.plot, jaxsim-montecarlo --plot) and the paper's figures on a user's scenario."""

import re
import pathlib

import pytest

from experiment.run_plots import FIGURES
from scripts.studies import montecarlo
from scripts.figures import plot
from experiment.study import study_args

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
SMALL = ["--set", "topology.n_cells=2", "--set", "topology.users_per_cell=2", "--set", "episode.horizon=4"]


def own_scenario() -> str:
    """The README's TOML that adds an A100 (the edge model on it) and a task type to the defaults."""
    m = re.search(r"<!-- example:own-scenario -->\n```toml\n(.*?)```\n<!-- example:end -->", README.read_text(), re.S)
    assert m, "no example:own-scenario block in the README"
    return m.group(1)


@pytest.mark.long
def test_own_scenario_run_folder_becomes_figures_in_png_and_pdf(tmp_path, capsys):
    (tmp_path / "mine.toml").write_text(own_scenario())
    run = tmp_path / "run"
    assert montecarlo.main(["--config", str(tmp_path / "mine.toml"), *SMALL, "--policies", "greedy,edge_only",
                            "--episodes", "3", "--out", str(run), "--plot", "png,pdf"]) == 0
    figs = run / "figures"
    for name in FIGURES:
        assert (figs / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert (figs / f"{name}.pdf").read_bytes()[:5] == b"%PDF-", name
        assert (figs / f"{name}.png").stat().st_size > 20_000, name
    first = (figs / "per_type.pdf").read_bytes()
    # the same folder drawn again by the script (into another folder): the same figures, byte for byte
    capsys.readouterr()
    assert plot.main([str(run), "--format", "pdf,svg", "--out", str(tmp_path / "again")]) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 2 * len(FIGURES) and all(pathlib.Path(p).exists() for p in printed)
    assert (tmp_path / "again" / "per_type.pdf").read_bytes() == first
    assert b"translate" in (tmp_path / "again" / "per_type.svg").read_bytes()     # the user's task type is drawn


def test_a_run_without_per_task_outputs_draws_what_it_can(tmp_path, capsys):
    run = tmp_path / "run"
    assert montecarlo.main(["--scenario", "tiny", *SMALL, "--policies", "edge_only", "--episodes", "2",
                            "--out", str(run), "--per-task", "off"]) == 0
    capsys.readouterr()
    assert plot.main([str(run)]) == 0
    captured = capsys.readouterr()
    assert [pathlib.Path(p).stem for p in captured.out.split()] == ["per_type"]
    assert "cdf: skipped" in captured.err and "--per-task on" in captured.err


def test_bad_run_folder_or_format_is_refused(tmp_path, capsys):
    assert plot.main([str(tmp_path / "nothing")]) == 2
    assert "not a finished run folder" in capsys.readouterr().err
    assert plot.main([str(tmp_path), "--format", "jpg"]) == 2
    assert "--format 'jpg': allowed a comma-separated list of png, pdf, svg" in capsys.readouterr().err
    assert montecarlo.main(["--scenario", "tiny", "--plot", "gif", "--out", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r").exists()                  # refused before any compute


def test_figure_scripts_take_a_scenario_and_formats(tmp_path):
    _, study = study_args("x", ["--scenario", "tiny", "--set", "episode.horizon=3", "--format", "png,svg",
                                "--out", str(tmp_path)])
    cfg = study.scenario()
    assert cfg.episode.horizon == 3 and cfg.topology.n_cells == 2 and study.formats == ("png", "svg")
    assert study.label().startswith("tiny (episode.horizon=3) scenario (2 cells x 3 users, 3 slots)")
    assert study.scenario(users_per_cell=5).topology.users_per_cell == 5        # fig5's network-size sweep
    assert study.figure_path("fig1_reward.png").endswith("fig1_reward.png")
    _, default = study_args("x", ["--out", str(tmp_path)])
    assert default.base is None and default.scenario().topology.n_cells == 2   # --quick sizes the default
    with pytest.raises(SystemExit) as e:
        study_args("x", ["--format", "tiff"])
    assert e.value.code == 2
