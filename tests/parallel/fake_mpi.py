"""An in-process stand-in for an MPI communicator: one thread per rank, messages through queues.

It implements the few mpi4py calls the toolkit's World makes (point to point with tags and
ANY_SOURCE, Iprobe, irecv, bcast, allgather, Barrier, Abort), copying every message through
pickle as MPI does, so the grid loop and the set-up agreement run in one test process.
"""
from __future__ import annotations

import pickle
import threading
from typing import Any, Callable

from loss_landscape_toolkit.parallel.world import World

ANY_SOURCE = -1


class Status:
    def __init__(self) -> None:
        self.source = None

    def Get_source(self) -> int:
        return self.source


class FakeMPI:
    """What World needs of the ``mpi4py.MPI`` module."""

    ANY_SOURCE = ANY_SOURCE
    Status = Status


class Aborted(Exception):
    """Raised in the rank that called Abort (the real one ends the process)."""


class _Hub:
    def __init__(self, size: int):
        self.size = size
        self.boxes: list[list[tuple[int, int, bytes]]] = [[] for _ in range(size)]  # per destination
        self.cond = threading.Condition()
        self.barrier = threading.Barrier(size)
        self.shared: dict[str, Any] = {}


class _Request:
    def __init__(self, comm: FakeComm, source: int, tag: int):
        self.comm, self.source, self.tag = comm, source, tag

    def wait(self) -> Any:
        return self.comm.recv(source=self.source, tag=self.tag)


class FakeComm:
    def __init__(self, hub: _Hub, rank: int):
        self.hub, self.rank = hub, rank

    def _match(self, source: int, tag: int) -> int | None:
        for i, (src, t, _) in enumerate(self.hub.boxes[self.rank]):
            if t == tag and (source == ANY_SOURCE or src == source):
                return i
        return None

    def send(self, obj: Any, dest: int, tag: int) -> None:
        with self.hub.cond:
            self.hub.boxes[dest].append((self.rank, tag, pickle.dumps(obj)))
            self.hub.cond.notify_all()

    def recv(self, source: int = ANY_SOURCE, tag: int = 0, status: Status | None = None) -> Any:
        with self.hub.cond:
            while (i := self._match(source, tag)) is None:
                if not self.hub.cond.wait(timeout=30):
                    raise TimeoutError(f"rank {self.rank} waited 30 s for tag {tag} from {source}")
            src, _, data = self.hub.boxes[self.rank].pop(i)
        if status is not None:
            status.source = src
        return pickle.loads(data)

    def Iprobe(self, source: int = ANY_SOURCE, tag: int = 0, status: Status | None = None) -> bool:
        with self.hub.cond:
            i = self._match(source, tag)
            if i is not None and status is not None:
                status.source = self.hub.boxes[self.rank][i][0]
            return i is not None

    def irecv(self, source: int, tag: int) -> _Request:
        return _Request(self, source, tag)

    def Barrier(self) -> None:
        self.hub.barrier.wait(timeout=30)

    def bcast(self, obj: Any, root: int = 0) -> Any:
        if self.rank == root:
            self.hub.shared["bcast"] = pickle.dumps(obj)
        self.Barrier()
        value = pickle.loads(self.hub.shared["bcast"])
        self.Barrier()
        return value

    def allgather(self, obj: Any) -> list[Any]:
        self.hub.shared[f"gather{self.rank}"] = pickle.dumps(obj)
        self.Barrier()
        values = [pickle.loads(self.hub.shared[f"gather{r}"]) for r in range(self.hub.size)]
        self.Barrier()
        return values

    def Abort(self, code: int = 1) -> None:
        raise Aborted(code)


def run_ranks(size: int, body: Callable[[World], Any]) -> list[Any]:
    """Run ``body(world)`` on ``size`` ranks in threads; return each rank's result or exception."""
    hub = _Hub(size)
    results: list[Any] = [None] * size

    def run(rank: int) -> None:
        world = World(comm=FakeComm(hub, rank), rank=rank, size=size, local_rank=rank,
                      hosts=["node"] * size, mpi=FakeMPI)
        try:
            results[rank] = body(world)
        except BaseException as exc:  # the test looks at what each rank raised
            results[rank] = exc

    threads = [threading.Thread(target=run, args=(r,), daemon=True) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a rank hung"
    return results
