"""Installs the toolkit's modules and scripts into an environment of your own.

`make demo` / `make test` do not need this: they use .venv with the pinned requirements.txt.
Ranges here are loose on purpose.
"""
import re
from pathlib import Path

from setuptools import setup

VERSION = re.search(r'TOOLKIT_VERSION = "([^"]+)"', (Path(__file__).parent / "cli_common.py").read_text()).group(1)

MODULES = [
    "cli_common", "cli_job", "dataloader", "errors", "evaluation", "grid_runner", "h52vtp",
    "h5_util", "hessian", "hessian_maps", "mesh_export", "model_loader", "mpi_util",
    "net_plotter", "plot_1D", "plot_2D", "plot_hessian_eigen", "plot_surface", "plot_trajectory",
    "plotting", "projection", "scheduler", "surface", "surface_stats", "training",
]
SCRIPTS = ["h52vtp", "plot_1D", "plot_2D", "plot_hessian_eigen", "plot_surface", "plot_trajectory"]

setup(
    name="loss-landscape-toolkit",
    version=VERSION,
    description="Loss-landscape visualization (Li et al., NeurIPS 2018), compatible with the reference code",
    python_requires=">=3.10",
    py_modules=MODULES,
    packages=["models"],
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
    entry_points={"console_scripts": [f"{name}={name}:main" for name in SCRIPTS]},
)
