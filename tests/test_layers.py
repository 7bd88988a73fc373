"""The layering, read from the imports themselves (ast): the simulator at the bottom, the baselines and the
ICL policy beside each other on it, the experiment layer above them, the scripts on top."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAYERS = ("jaxsim", "baselines", "icl", "experiment", "scripts")
# what each package may not import
FORBIDDEN = {
    "jaxsim": {"baselines", "icl", "experiment", "scripts"},
    "baselines": {"icl", "experiment", "scripts"},
    "icl": {"baselines", "experiment", "scripts"},
    "experiment": {"scripts"},
}


def imported_packages(path: pathlib.Path) -> set[tuple[str, int]]:
    """Top-level package of every import in a file (module-level and inside functions alike), with line."""
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {(a.name.split(".")[0], node.lineno) for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add((node.module.split(".")[0], node.lineno))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_module_reaches_across_the_layers(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no modules in {package}/"
    bad = [f"{f.relative_to(ROOT)}:{line} imports {name}" for f in files
           for name, line in imported_packages(f) if name in FORBIDDEN[package]]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import os\n\ndef g():\n    from icl.policy import ICLConfig\n    import baselines.ppo as p\n")
    assert {n for n, _ in imported_packages(f)} == {"os", "icl", "baselines"}
