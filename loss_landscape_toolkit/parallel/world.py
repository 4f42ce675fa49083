"""The process world: one process, or the ranks of an MPI job (mpirun, mpiexec, srun).

mpi4py is imported only when the job was started by an MPI launcher or ``--mpi`` asks for it,
so a plain ``python plot_surface.py`` needs no MPI at all. Under a launcher the world size is
detected from the environment; ``--mpi`` is accepted but not needed (the reference code ran N
independent copies when it was forgotten).
"""
from __future__ import annotations

import os
import platform
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from ..errors import EXIT_USAGE, Interrupted, SilentExit, UsageError

# Environment variables through which launchers announce the world size: MPICH/Hydra and
# srun's PMI-2 (PMI_SIZE), Open MPI, MVAPICH2, and srun itself.
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS")
_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "SLURM_PROCID")
TAG_AGREE = 21  # set-up outcomes (the grid loop uses 11 and 12)
# First report of ranks waiting at a set-up step, then doubling (an environment knob for tests)
WAIT_REPORT_SECS = float(os.environ.get("LANDSCAPE_WAIT_REPORT_SECS", "60"))
# How long an interrupted worker waits for rank 0 to save the results and end the job
STOP_GRACE_SECS = 60.0


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
    """Rank, size and node-local rank of this process; ``comm`` is None without MPI.

    ``mpi`` is the module with ``ANY_SOURCE`` and ``Status`` (``mpi4py.MPI``, imported when first
    needed); tests pass a small in-process stand-in for it and for ``comm``.
    """

    comm: Any = None
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    hosts: list[str] = field(default_factory=list)  # host name of every rank
    mpi: Any = None

    @property
    def _mpi(self) -> Any:
        if self.mpi is None:
            from mpi4py import MPI

            self.mpi = MPI
        return self.mpi

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

    def send(self, obj: Any, dest: int, tag: int) -> None:
        self.comm.send(obj, dest=dest, tag=tag)

    def irecv(self, source: int, tag: int) -> Any:
        """A pending receive; its ``wait()`` returns the message."""
        return self.comm.irecv(source=source, tag=tag)

    def recv_any(self, tag: int) -> tuple[int, Any]:
        """The next message with ``tag`` from any rank, waiting for it: ``(source, message)``."""
        status = self._mpi.Status()
        msg = self.comm.recv(source=self._mpi.ANY_SOURCE, tag=tag, status=status)
        return status.Get_source(), msg

    def poll_any(self, tag: int) -> tuple[int, Any] | None:
        """A message with ``tag`` that has already arrived from any rank, or None (no waiting)."""
        status = self._mpi.Status()
        if not self.comm.Iprobe(source=self._mpi.ANY_SOURCE, tag=tag, status=status):
            return None
        source = status.Get_source()
        return source, self.comm.recv(source=source, tag=tag)

    def abort(self, code: int = 1) -> None:
        """End every rank now (after an error that the others cannot know about)."""
        sys.stdout.flush()
        sys.stderr.flush()
        if self.comm is not None and self.size > 1:
            self.comm.Abort(code)
        raise SystemExit(code)

    @contextmanager
    def agreed(self, step: str = "set-up") -> Iterator[None]:
        """Run a set-up step on every rank and stop all ranks together if any rank failed.

        Every rank must enter and leave the block at the same place. If one or more ranks
        raised, the lowest failing rank re-raises its exception (so it is reported once) and
        the others raise :class:`SilentExit` with the same exit code; nobody hangs in a later
        collective waiting for a rank that died. While ranks wait for a slow one (a node that
        cannot read its data, say), the wait is reported with the step and the ranks' hosts.
        """
        error: BaseException | None = None
        try:
            yield
        except Exception as exc:
            error = exc
        if self.comm is None or self.size == 1:
            if error is not None:
                raise error
            return
        code = None if error is None else (EXIT_USAGE if isinstance(error, UsageError) else 1)
        codes = self._gather_codes(code, step)
        failed = [r for r, c in enumerate(codes) if c is not None]
        if not failed:
            return
        if self.rank == failed[0]:
            if self.rank != 0 and isinstance(error, UsageError):
                error.args = (f"(rank {self.rank}) {error}",)
            raise error
        raise SilentExit(codes[failed[0]])

    def _gather_codes(self, code: int | None, step: str) -> list[int | None]:
        """Every rank's outcome of ``step``, gathered point to point so waits can be reported."""
        comm, status = self.comm, self._mpi.Status()
        start, next_report = time.monotonic(), WAIT_REPORT_SECS
        if self.is_root:
            codes: dict[int, int | None] = {0: code}
            while len(codes) < self.size:
                if comm.Iprobe(source=self._mpi.ANY_SOURCE, tag=TAG_AGREE, status=status):
                    codes[status.Get_source()] = comm.recv(source=status.Get_source(), tag=TAG_AGREE)
                    continue
                time.sleep(0.005)
                if time.monotonic() - start >= next_report:
                    late = [r for r in range(self.size) if r not in codes]
                    hosts = sorted({self.hosts[r] for r in late}) if self.hosts else []
                    print(f"waiting {time.monotonic() - start:.0f} s for rank(s) {late} (host(s) "
                          f"{', '.join(hosts)}) to finish {step}; a node that cannot read the data "
                          f"or the model files stalls here", file=sys.stderr, flush=True)
                    next_report *= 2
            result = [codes[r] for r in range(self.size)]
            for r in range(1, self.size):
                comm.send(result, dest=r, tag=TAG_AGREE + 1)
            return result
        comm.send(code, dest=0, tag=TAG_AGREE)
        while not comm.Iprobe(source=0, tag=TAG_AGREE + 1):
            time.sleep(0.005)
            if self.rank == 1 and time.monotonic() - start >= next_report:
                print(f"rank 1: waiting {time.monotonic() - start:.0f} s for rank 0 (host "
                      f"{self.hosts[0] if self.hosts else '?'}) to finish {step}",
                      file=sys.stderr, flush=True)
                next_report *= 2
        return comm.recv(source=0, tag=TAG_AGREE + 1)


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
    return World(comm=comm, rank=comm.Get_rank(), size=comm.Get_size(), local_rank=local_rank,
                 hosts=comm.allgather(platform.node()))


def abort_on_error(world: World) -> Any:
    """Context manager for the compute phase: any exception on any rank ends the whole job.

    The failing rank prints its traceback (it is a bug or a hardware fault, not bad input) and
    calls MPI Abort, which the launcher turns into the end of every rank within seconds. An
    interruption ends the job from rank 0, once it has saved the results (see parallel.grid).
    """

    @contextmanager
    def guard() -> Iterator[None]:
        try:
            yield
        except SilentExit:
            raise
        except Interrupted as exc:
            if world.size == 1:
                raise
            if world.is_root:
                print(exc, file=sys.stderr, flush=True)
            else:  # rank 0 has our results and ends the job; end it ourselves if it does not
                time.sleep(STOP_GRACE_SECS)
            world.abort(exc.code)
        except UsageError as exc:
            if world.size == 1:
                raise
            print(f"error on rank {world.rank}: {exc}", file=sys.stderr, flush=True)
            world.abort(EXIT_USAGE)
        except BaseException:
            if world.size == 1:
                raise
            print(f"rank {world.rank} of {world.size} failed:", file=sys.stderr)
            traceback.print_exc()
            world.abort(1)

    return guard()
