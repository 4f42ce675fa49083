"""The benchmark scripts still run (tiny sizes; no timing is asserted)."""
from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_gpu_benchmark_runs_on_the_cpu():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_gpu.py"), "--device", "cpu",
                           "--images", "32", "--model", "resnet20", "--points", "1", "--grid", "5",
                           "--configs", "fp32,fp32+8pts"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "fp32+8pts" in proc.stdout and "whole grid on one device" in proc.stdout
