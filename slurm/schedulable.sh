# Sourced by slurm/submit.sh and slurm/submit_array.sh (not run on its own): refuse, in one line
# and with exit code 1, a request that this cluster can never run, rather than leave a job
# pending forever without a word (e.g. more nodes than the partition has).

# Reasons of a pending job that no wait fixes: the request exceeds what the partition has (nodes,
# CPUs, memory, time limit), names a feature no node has, or breaks a per-job QOS/account limit.
NEVER_REASONS='^(PartitionNodeLimit|PartitionConfig|PartitionTimeLimit|BadConstraints|InvalidAccount|InvalidQOS|(QOS|Assoc)Max[A-Za-z]*PerJob[A-Za-z]*)'
# Reasons that need an administrator (nodes down or drained, partition down): the job stays queued.
ADMIN_REASONS='^(ReqNodeNotAvail|PartitionDown|PartitionInactive|NodeDown)'

# check_request SBATCH_ARGUMENTS...: ask SLURM, without submitting (sbatch --test-only), whether
# the request can ever start on this cluster.
check_request() {
  local out
  if ! out=$(sbatch --test-only "$@" 2>&1); then
    out=$(printf '%s\n' "$out" | sed 's/^sbatch: error: //' | paste -sd ' ' -)
    echo "error: this cluster cannot run the job as requested (sbatch --test-only says: $out); ask for" \
         "fewer nodes, tasks or CPUs per task (SBATCH_ARGS, or the EDIT lines of the template):" \
         "sinfo -o '%P %D %c %m %l' shows the partitions' nodes, CPUs per node, memory and time limit" >&2
    exit 1
  fi
}

# check_pending JOBID: watch a job just submitted for a few seconds, until SLURM gives it a state or
# a reason. A job that can never start is cancelled; exit 1 with one line for it, and for a job that
# needs an administrator first.
check_pending() {
  local job=$1 line state reason
  for _ in $(seq 20); do
    line=$(squeue -j "$job" -h -o '%T|%r' 2>/dev/null | head -n 1 || true)
    state=${line%%|*}
    reason=${line#*|}
    [ "$state" = PENDING ] || return 0   # running, finished, or no longer listed
    if [[ $reason =~ $NEVER_REASONS ]]; then
      scancel "$job" 2>/dev/null || true
      echo "error: job $job can never start on this cluster (SLURM: $reason); cancelled it. Ask for" \
           "fewer nodes, tasks, CPUs or less time (SBATCH_ARGS, or the EDIT lines of the template)" >&2
      exit 1
    fi
    if [[ $reason =~ $ADMIN_REASONS ]]; then
      echo "error: job $job cannot start until an administrator brings nodes back (SLURM: $reason);" \
           "it stays queued: scancel $job to drop it, or resubmit to another partition" >&2
      exit 1
    fi
    [ "$reason" = None ] || return 0     # Priority, Resources, Dependency, ...: it waits its turn
    sleep 0.25
  done
}
