"""The README's example of a user's own policy runs as written (in a temporary folder)."""

import re
import pathlib

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def example(name: str) -> str:
    m = re.search(rf"<!-- example:{name} -->\n```python\n(.*?)```\n<!-- example:end -->", README.read_text(), re.S)
    assert m, f"no example:{name} block in the README"
    return m.group(1)


@pytest.mark.long
def test_register_example_runs(tmp_path, monkeypatch, capsys):
    code = example("register")
    assert len(code.strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README example", "exec"), {})
    out = capsys.readouterr().out
    rewards = eval(out.strip().splitlines()[-1])
    assert set(rewards) == {"greedy", "edge_unless_busy"} and rewards["greedy"] > rewards["edge_unless_busy"] - 1
    assert (tmp_path / "runs" / "mine" / "policies" / "edge_unless_busy" / "summary.json").exists()


def test_plugin_flag_registers_before_the_run(tmp_path, monkeypatch, capsys):
    from scripts.studies import montecarlo
    (tmp_path / "my_policies.py").write_text(
        "import jax.numpy as jnp\nfrom experiment import register\n"
        "register('all_cloud_small', lambda k, o, p: jnp.ones(o.mask.shape, jnp.int32))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from conftest import tiny_config
    from experiment.files import save_config
    save_config(tiny_config(), tmp_path / "tiny.toml")
    rc = montecarlo.main(["--plugin", "my_policies", "--policies", "all_cloud_small,cloud_small_only", "--episodes", "2",
                          "--config", str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "run")])
    assert rc == 0
    import json
    s = json.loads((tmp_path / "run" / "summary.json").read_text())["policies"]
    assert s["all_cloud_small"]["reward"] == s["cloud_small_only"]["reward"]
    assert montecarlo.main(["--plugin", "no_such_module_xyz", "--out", str(tmp_path / "x")]) == 2
    assert "--plugin 'no_such_module_xyz': cannot be imported" in capsys.readouterr().err
