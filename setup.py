"""Installs the toolkit's package and its command-line programs into an environment of your own.

`make demo` / `make test` do not need this: they use .venv with the pinned requirements.txt.
Ranges here are loose on purpose.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(r'__version__ = "([^"]+)"',
                    (Path(__file__).parent / "loss_landscape_toolkit" / "_version.py").read_text()).group(1)

# program name -> module of loss_landscape_toolkit.cli (the checkout's plot_*.py, h52vtp.py,
# compare_surfaces.py and cifar10/main.py call the same main functions)
SCRIPTS = {
    "plot_surface": "plot_surface",
    "plot_1D": "plot_1d",
    "plot_2D": "plot_2d",
    "plot_trajectory": "plot_trajectory",
    "plot_hessian_eigen": "plot_hessian_eigen",
    "h52vtp": "h52vtp",
    "landscape_train": "train",
    "compare_surfaces": "compare",
}

setup(
    name="loss-landscape-toolkit",
    version=VERSION,
    description="Loss-landscape visualization (Li et al., NeurIPS 2018), compatible with the reference code",
    python_requires=">=3.10",
    packages=find_packages(include=["loss_landscape_toolkit", "loss_landscape_toolkit.*"]),
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "numpy>=1.24",
        "h5py>=3.5",
        "matplotlib>=3.7",
        "scipy>=1.10",
        "tqdm>=4.60",
    ],
    extras_require={
        "mpi": ["mpi4py>=3.1", "mpich"],
        "digits": ["scikit-learn>=1.2"],
        "test": ["pytest>=7", "scikit-learn>=1.2", "mpi4py>=3.1", "mpich"],
    },
    entry_points={"console_scripts": [f"{name}=loss_landscape_toolkit.cli.{module}:main"
                                      for name, module in SCRIPTS.items()]},
)
