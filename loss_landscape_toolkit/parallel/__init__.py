"""Running a grid on one process or many: the MPI world, the scheduler and the grid loop."""
