"""Every command the README, the docs and the Makefile name runs its --help, and every program under scripts/ is
documented: the tree of scripts/ and the commands users read stay one."""

import contextlib
import importlib
import io
import pathlib
import re
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "Makefile", *sorted((ROOT / "docs").glob("*.md"))]
MODULE = re.compile(r"\bscripts(?:\.\w+)+")          # a command (python -m scripts.x.y) or a program named in prose


def documented_modules() -> list[str]:
    found = set()
    for doc in DOCS:
        found.update(MODULE.findall(doc.read_text()))
    return sorted(found)


def script_modules() -> list[str]:
    return sorted(".".join(p.relative_to(ROOT).with_suffix("").parts) for p in (ROOT / "scripts").rglob("*.py")
                  if p.name != "__init__.py")


def entry_points() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_documented_commands_exist_and_every_program_is_documented():
    documented, programs = documented_modules(), script_modules()
    assert len(documented) >= 10, documented
    assert not set(documented) - set(programs), f"documented but missing: {sorted(set(documented) - set(programs))}"
    undocumented = set(programs) - set(documented) - {v.split(":")[0] for v in entry_points().values()}
    assert not undocumented, f"programs no doc names: {sorted(undocumented)}"
    for name in programs:
        text = (ROOT / (name.replace(".", "/") + ".py")).read_text()
        assert 'if __name__ == "__main__":' in text, f"{name} does not run as python -m {name}"
    # scripts/ holds only its purposes' folders (and the package marker)
    assert sorted(p.name for p in (ROOT / "scripts").iterdir() if p.name != "__pycache__") == \
        ["__init__.py", "bench", "figures", "studies", "tools"]


@pytest.mark.parametrize("module", sorted(set(script_modules())))
def test_help_runs(module):
    main = importlib.import_module(module).main
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0, f"{module} --help exited {e.value.code}"
    assert out.getvalue().startswith("usage:"), out.getvalue()[:200]


def test_entry_point_and_python_m_run_help():
    for name, target in entry_points().items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), name
    # one real `python -m` start: the package layout resolves as users type it
    r = subprocess.run([sys.executable, "-m", "scripts.figures.plot", "--help"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("usage:"), r.stderr[-2000:]
