"""setup.py installs every module the scripts import, and the Makefile/CI wiring is in place."""
from __future__ import annotations

import ast

from conftest import ROOT


def _setup_list(name: str) -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not found in setup.py")


def test_setup_lists_every_top_level_module():
    modules = sorted(p.stem for p in ROOT.glob("*.py") if p.name != "setup.py")
    assert sorted(_setup_list("MODULES")) == modules


def test_every_cli_is_an_entry_point():
    scripts = sorted(p.stem for p in ROOT.glob("*.py")
                     if p.name != "setup.py" and 'if __name__ == "__main__":' in p.read_text())
    assert sorted(_setup_list("SCRIPTS")) == scripts


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
