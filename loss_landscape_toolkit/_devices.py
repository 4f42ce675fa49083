"""Where a process computes: its torch device (one GPU per rank on a node) and its CPU threads."""
from __future__ import annotations

import os

import torch

from .errors import UsageError


def choose_device(spec: str | None, *, cuda: bool = False, prefer_gpu: bool = False,
                  local_rank: int = 0, ngpu: int = 1) -> torch.device:
    """The device of this process.

    Args:
        spec: an explicit torch device (``--device``: cpu, cuda, cuda:1); wins over the rest.
        cuda: a GPU is required (``--cuda``).
        prefer_gpu: use a GPU when there is one (the training script's default), else the CPU.
        local_rank: this process's rank among the processes of its node; a ``cuda`` device without
            an index becomes GPU ``local_rank % (visible GPUs)``, made current.
        ngpu: more than 1 spreads each batch over all visible GPUs (DataParallel); needs at least 2.

    Raises:
        UsageError: not a torch device, a GPU asked for but none visible, or too few GPUs.
    """
    if not spec:
        spec = "cuda" if cuda or (prefer_gpu and torch.cuda.is_available()) else "cpu"
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"--device {spec!r} is not a torch device; try cpu, cuda or cuda:1") from None
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda":
        if not visible:
            raise UsageError("--cuda/--device cuda asked for a GPU but torch sees none "
                             "(check CUDA_VISIBLE_DEVICES and the driver), or run without --cuda")
        if device.index is None:
            device = torch.device("cuda", local_rank % visible)
        torch.cuda.set_device(device)
    if ngpu < 1:
        raise UsageError(f"--ngpu must be >= 1, got {ngpu}")
    if ngpu > 1 and (device.type != "cuda" or visible < 2):
        raise UsageError(f"--ngpu {ngpu} needs a GPU device (--cuda) and at least 2 visible GPUs; "
                         f"torch sees {visible}")
    return device


def set_threads(threads: int | None, *, ranks_on_node: int = 1) -> str:
    """Set torch's CPU threads of this process; returns how many and why, for the start-up report.

    ``threads`` None picks them from the allocation: ``SLURM_CPUS_PER_TASK`` under SLURM, else the
    cores this process may use shared by the ``ranks_on_node`` processes of its node (torch's own
    default takes every core in every process, which oversubscribes the cores under mpirun). An
    ``OMP_NUM_THREADS`` of the user's is left to torch.

    Raises:
        UsageError: ``threads`` < 1.
    """
    if threads is not None:
        if threads < 1:
            raise UsageError(f"--threads must be >= 1, got {threads}")
        why = "--threads"
    elif os.environ.get("OMP_NUM_THREADS"):
        return f"{torch.get_num_threads()} (OMP_NUM_THREADS)"
    elif os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        threads, why = int(os.environ["SLURM_CPUS_PER_TASK"]), "SLURM_CPUS_PER_TASK"
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = max(1, cores // max(1, ranks_on_node))
        why = f"{cores} core(s) / {ranks_on_node} process(es) on this node"
    torch.set_num_threads(threads)
    return f"{threads} ({why})"
