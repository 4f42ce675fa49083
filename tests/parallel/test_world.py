"""parallel/world.py: launcher detection, and the set-up agreement of the ranks (fake communicator)."""
from __future__ import annotations

import pytest
from fake_mpi import Aborted, run_ranks

from loss_landscape_toolkit.errors import EXIT_USAGE, SilentExit, UsageError
from loss_landscape_toolkit.parallel import world as world_module
from loss_landscape_toolkit.parallel.world import World, abort_on_error, detect_world


def test_one_process_without_a_launcher(monkeypatch):
    for var in world_module._SIZE_VARS + world_module._RANK_VARS:
        monkeypatch.delenv(var, raising=False)
    world = detect_world()
    assert (world.comm, world.rank, world.size, world.is_root) == (None, 0, 1, True)
    assert world.bcast("x") == "x" and world.allgather(3) == [3]
    monkeypatch.setenv("PMI_SIZE", "4")
    monkeypatch.setenv("PMI_RANK", "2")
    assert world_module.launcher_size() == 4 and world_module.env_rank() == 2


def test_agreed_step_passes_when_every_rank_succeeds():
    def body(world: World):
        with world.agreed("loading"):
            value = world.rank * 10
        return world.allgather(value)

    assert run_ranks(3, body) == [[0, 10, 20]] * 3


def test_a_failing_rank_is_reported_once_and_every_rank_stops():
    def body(world: World):
        with world.agreed("loading the data"):
            if world.rank in (1, 2):
                raise UsageError(f"no data on rank {world.rank}")
        return "went on"

    results = run_ranks(3, body)
    assert isinstance(results[1], UsageError) and str(results[1]) == "(rank 1) no data on rank 1"
    assert isinstance(results[0], SilentExit) and results[0].code == EXIT_USAGE
    assert isinstance(results[2], SilentExit) and results[2].code == EXIT_USAGE  # only the lowest reports


def test_a_bug_on_a_rank_gives_exit_code_1_everywhere_else():
    def body(world: World):
        with world.agreed():
            if world.rank == 0:
                raise KeyError("bug")

    results = run_ranks(2, body)
    assert isinstance(results[0], KeyError)
    assert isinstance(results[1], SilentExit) and results[1].code == 1


def test_a_slow_rank_is_named_while_the_others_wait(monkeypatch, capsys):
    import time

    monkeypatch.setattr(world_module, "WAIT_REPORT_SECS", 0.05)

    def body(world: World):
        with world.agreed("reading the model"):
            if world.rank == 2:
                time.sleep(0.3)

    assert run_ranks(3, body) == [None] * 3
    err = capsys.readouterr().err
    assert "waiting" in err and "rank(s) [2]" in err and "to finish reading the model" in err


def test_abort_on_error_ends_the_job_through_mpi_abort(capsys):
    def body(world: World):
        with abort_on_error(world):
            if world.rank == 1:
                raise UsageError("bad value on one rank")

    results = run_ranks(2, body)
    assert results[0] is None
    assert isinstance(results[1], Aborted) and results[1].args == (EXIT_USAGE,)
    assert "error on rank 1: bad value on one rank" in capsys.readouterr().err


def test_one_process_keeps_its_exception():
    with pytest.raises(UsageError), abort_on_error(World()):
        raise UsageError("bad")
