#!/bin/bash
# Submit a loss surface as N array tasks plus a merge job that runs when all of them succeeded.
#
#   slurm/submit_array.sh 8 --cuda --model resnet56 --model_file m.t7 --x=-1:1:51 --y=-1:1:51
#
# Run it from the project folder. Extra sbatch options go in SBATCH_ARGS, e.g.
# SBATCH_ARGS="--partition=gpu --gres=gpu:1" slurm/submit_array.sh 8 ...
# A request this cluster can never run is refused in one line, exit code 1 (slurm/schedulable.sh).
set -euo pipefail
N=$1
shift
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=slurm/schedulable.sh
. "$HERE/schedulable.sh"
export LANDSCAPE_HOME=${LANDSCAPE_HOME:-$(dirname "$HERE")}   # the jobs inherit it
export LANDSCAPE_DATAPATH=${LANDSCAPE_DATAPATH:-$LANDSCAPE_HOME/cifar10/data}
PYTHON=${PYTHON:-$LANDSCAPE_HOME/.venv/bin/python}
# shellcheck disable=SC2086
check_request ${SBATCH_ARGS:-} --array=0-$((N - 1)) "$HERE/plot_surface_array.sbatch" "$@"
# shellcheck disable=SC2086
ARRAY=$(sbatch --parsable ${SBATCH_ARGS:-} --array=0-$((N - 1)) "$HERE/plot_surface_array.sbatch" "$@")
ARRAY=${ARRAY%%;*}
check_pending "$ARRAY"
# shellcheck disable=SC2086
MERGE=$(sbatch --parsable ${SBATCH_ARGS:-} --dependency=afterok:"$ARRAY" --kill-on-invalid-dep=yes \
        --job-name=loss-surface-merge \
        --ntasks=1 --output=loss-surface-merge-%j.out \
        --wrap="$(printf '%q ' "$PYTHON" "$LANDSCAPE_HOME/plot_surface.py" "$@" --of "$N" --merge)")
echo "submitted array job $ARRAY ($N tasks) and merge job $MERGE"
