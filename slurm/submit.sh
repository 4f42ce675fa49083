#!/bin/bash
# Submit one of the MPI templates (plot_surface.sbatch, plot_hessian_eigen.sbatch), after checking
# that this cluster can run the request at all; a job that SLURM would keep pending forever (more
# nodes, CPUs or time than the partition has, ...) is reported in one line, exit code 1.
#
#   slurm/submit.sh plot_surface.sbatch --cuda --model resnet56 --model_file m.t7 --x=-1:1:51 --y=-1:1:51
#
# Run it from the project folder. The template asks for 1 node and 2 tasks; more resources go in
# SBATCH_ARGS (they override the template), e.g. 8 ranks on 2 nodes of 4 GPUs:
#   SBATCH_ARGS="--nodes=2 --ntasks=8 --gpus-per-task=1 --time=02:00:00" slurm/submit.sh plot_surface.sbatch ...
# (`plot_surface.py ... --estimate` suggests --ntasks and --time.)
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: [SBATCH_ARGS=...] $0 TEMPLATE.sbatch ARGUMENTS..." >&2
  exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=slurm/schedulable.sh
. "$HERE/schedulable.sh"
TEMPLATE=$1
shift
[ -f "$TEMPLATE" ] || TEMPLATE=$HERE/$TEMPLATE
export LANDSCAPE_HOME=${LANDSCAPE_HOME:-$(dirname "$HERE")}   # the job inherits it
# shellcheck disable=SC2086
check_request ${SBATCH_ARGS:-} "$TEMPLATE" "$@"
# shellcheck disable=SC2086
JOB=$(sbatch --parsable ${SBATCH_ARGS:-} "$TEMPLATE" "$@")
JOB=${JOB%%;*}   # "id;cluster" on multi-cluster sites
check_pending "$JOB"
echo "submitted job $JOB ($(basename "$TEMPLATE")); squeue -j $JOB shows its state"
