"""The project installs as one package plus its programs, and the checkout's entry points call them."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA, ROOT

PACKAGE = "loss_landscape_toolkit"
ENTRY_POINTS = {  # checkout file -> module of the package's cli
    "plot_surface.py": "plot_surface", "plot_1D.py": "plot_1d", "plot_2D.py": "plot_2d",
    "plot_trajectory.py": "plot_trajectory", "plot_hessian_eigen.py": "plot_hessian_eigen",
    "h52vtp.py": "h52vtp", "cifar10/main.py": "train", "compare_surfaces.py": "compare",
}


def _setup_scripts() -> dict[str, str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "SCRIPTS":
            return ast.literal_eval(node.value)
    raise AssertionError("SCRIPTS not found in setup.py")


def test_every_cli_module_is_a_console_script_and_a_checkout_entry_point():
    cli_modules = sorted(p.stem for p in (ROOT / PACKAGE / "cli").glob("*.py")
                         if "def main(" in p.read_text())
    assert sorted(_setup_scripts().values()) == cli_modules
    assert sorted(ENTRY_POINTS.values()) == cli_modules
    for path, module in ENTRY_POINTS.items():
        text = (ROOT / path).read_text()
        assert f"from {PACKAGE}.cli.{module} import main" in text, path
        assert len(text.splitlines()) <= 15, f"{path} should stay a thin entry point"


def test_the_checkout_has_no_library_code_at_the_top_level():
    """Only the design card's entry points and re-exports sit beside the package."""
    top = sorted(p.name for p in ROOT.glob("*.py"))
    assert top == sorted(["setup.py", "net_plotter.py", "projection.py", "scheduler.py",
                          *[p for p in ENTRY_POINTS if "/" not in p]])
    assert sorted(p.name for p in (ROOT / "models").glob("*.py")) == ["__init__.py"]


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme


@pytest.mark.slow
def test_installed_package_ignores_the_users_own_modules(tmp_path: Path):
    """`pip install --target` gives one top-level package; run from a folder holding files named
    like the old top-level modules, the installed toolkit still imports its own code."""
    target, source = tmp_path / "site", tmp_path / "source"
    # a copy of the project, so the build leaves nothing in the checkout
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "tests", "build", "*.egg-info",
                                                                "__pycache__", "demo_out"))
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                          "--no-build-isolation", "--target", str(target), str(source)],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr
    entries = sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info"))
    assert entries == ["bin", PACKAGE]
    assert sorted(p.name for p in (target / "bin").iterdir()) == sorted(_setup_scripts())
    user = tmp_path / "notebook"
    (user / "models").mkdir(parents=True)
    trap = 'raise ImportError("the user\'s own module was imported")\n'
    for name in ("errors.py", "training.py", "plotting.py", "surface.py", "evaluation.py",
                 "h5_util.py", "net_plotter.py", "models/__init__.py"):
        (user / name).write_text(trap)
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONUNBUFFERED": "1"}
    args = ["--model", f"{DATA / 'tiny_model.py'}:tiny", "--dataset", "digits", "--x=-1:1:3",
            "--data_split", "8", "--no_progress", "--threads", "1"]
    # the user's folder first on sys.path, as in a notebook or `python -c` started there
    run = subprocess.run([sys.executable, "-c", f"from {PACKAGE}.cli.plot_surface import main; "
                          "raise SystemExit(main())", *args], cwd=user, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "surface file:" in run.stdout
    script = subprocess.run([str(target / "bin" / "plot_surface"), *args, "--surf_file", "by_script.h5"],
                            cwd=user, env=env, capture_output=True, text=True, timeout=300)
    assert script.returncode == 0, script.stdout + script.stderr
    assert (user / "by_script.h5").is_file() and "train_loss: 3/3 points done" in script.stdout
    installed = subprocess.run([sys.executable, "-c", f"import {PACKAGE}; print({PACKAGE}.__file__)"],
                               cwd=user, env=env, capture_output=True, text=True, timeout=60)
    assert installed.stdout.strip().startswith(str(target)), installed.stdout + installed.stderr
