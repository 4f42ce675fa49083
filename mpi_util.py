"""The process world: one process, or the ranks of an MPI job (mpirun, mpiexec, srun).

mpi4py is imported only when the job was started by an MPI launcher or ``--mpi`` asks for it,
so a plain ``python plot_surface.py`` needs no MPI at all. Under a launcher the world size is
detected from the environment; ``--mpi`` is accepted but not needed (the reference code ran N
independent copies when it was forgotten).
"""
from __future__ import annotations

import os
import sys
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from errors import EXIT_USAGE, SilentExit, UsageError

# Environment variables through which launchers announce the world size: MPICH/Hydra and
# srun's PMI-2 (PMI_SIZE), Open MPI, MVAPICH2, and srun itself.
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS")
_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "SLURM_PROCID")
_LOCAL_RANK_VARS = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK",
                    "SLURM_LOCALID")


def launcher_size() -> int:
    """World size announced by an MPI launcher in the environment (1 if none)."""
    for var in _SIZE_VARS:
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 1:
            return int(value)
    return 1


def env_rank() -> int:
    """This process's rank as announced by the launcher (0 if none); usable before MPI starts."""
    for var in _RANK_VARS:
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return 0


@dataclass
class World:
    """Rank, size and node-local rank of this process; ``comm`` is None without MPI."""

    comm: Any = None
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.comm is not None:
            self.comm.Barrier()

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return obj if self.comm is None else self.comm.bcast(obj, root=root)

    def allgather(self, obj: Any) -> list[Any]:
        return [obj] if self.comm is None else self.comm.allgather(obj)

    def abort(self, code: int = 1) -> None:
        """End every rank now (after an error that the others cannot know about)."""
        sys.stdout.flush()
        sys.stderr.flush()
        if self.comm is not None and self.size > 1:
            self.comm.Abort(code)
        raise SystemExit(code)

    @contextmanager
    def agreed(self) -> Iterator[None]:
        """Run a set-up step on every rank and stop all ranks together if any rank failed.

        Every rank must enter and leave the block at the same place. If one or more ranks
        raised, the lowest failing rank re-raises its exception (so it is reported once) and
        the others raise :class:`SilentExit` with the same exit code; nobody hangs in a later
        collective waiting for a rank that died.
        """
        error: BaseException | None = None
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - re-raised below on the reporting rank
            error = exc
        if self.comm is None or self.size == 1:
            if error is not None:
                raise error
            return
        code = None if error is None else (EXIT_USAGE if isinstance(error, UsageError) else 1)
        codes = self.comm.allgather(code)
        failed = [r for r, c in enumerate(codes) if c is not None]
        if not failed:
            return
        if self.rank == failed[0]:
            if self.rank != 0 and isinstance(error, UsageError):
                error.args = (f"(rank {self.rank}) {error}",)
            raise error
        raise SilentExit(codes[failed[0]])


def detect_world(*, force_mpi: bool = False) -> World:
    """The world of this process.

    Args:
        force_mpi: use MPI even when no launcher is detected (the reference's ``--mpi``).

    Raises:
        UsageError: MPI is needed but mpi4py cannot be imported.
    """
    if not force_mpi and launcher_size() == 1:
        return World()
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise UsageError(
            f"this job was started by an MPI launcher (or with --mpi) but mpi4py cannot be "
            f"imported ({exc}); install it (pip install mpi4py mpich) or run without mpirun"
        ) from None
    comm = MPI.COMM_WORLD
    node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    local_rank = node.Get_rank()
    node.Free()
    return World(comm=comm, rank=comm.Get_rank(), size=comm.Get_size(), local_rank=local_rank)


def abort_on_error(world: World) -> Any:
    """Context manager for the compute phase: any exception on any rank ends the whole job.

    The failing rank prints its traceback (it is a bug or a hardware fault, not bad input) and
    calls MPI Abort, which the launcher turns into the end of every rank within seconds.
    """

    @contextmanager
    def guard() -> Iterator[None]:
        try:
            yield
        except SilentExit:
            raise
        except UsageError as exc:
            if world.size == 1:
                raise
            print(f"error on rank {world.rank}: {exc}", file=sys.stderr, flush=True)
            world.abort(EXIT_USAGE)
        except BaseException:  # noqa: BLE001 - includes KeyboardInterrupt: stop all ranks
            if world.size == 1:
                raise
            print(f"rank {world.rank} of {world.size} failed:", file=sys.stderr)
            traceback.print_exc()
            world.abort(1)

    return guard()
