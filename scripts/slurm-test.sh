#!/usr/bin/env bash
# Runs a tiny grid (tiny BERT, 4 cells) through a real single-node Slurm cluster that this
# script starts (munged, slurmctld, slurmd under a temporary folder, own ports), as #18 asks:
#   1. `lpft reproduce --emit slurm`, then `submit.sh`: the array (one cell per task) and the
#      finishing job (kernel alignment, report) run to completion through sbatch;
#   2. a second grid: the FT cell is cancelled with `scancel` halfway through its training, and
#      resubmitting finishes only that cell, resumed from its last epoch, the others untouched.
# Usage: scripts/slurm-test.sh [path/to/lpft]   (default: target/release/lpft, built if missing)
# Needs slurm-wlm and munge (Debian). With LPFT_SLURM_INSTALL=1 it installs them with apt-get;
# otherwise, or when the daemons cannot start here, it prints a `skipped:` line and exits 0.
# A failure of lpft's side (a cell not finished, one rerun that should not be) exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
skip() { echo "skipped: Slurm test: $*"; exit 0; }
fail() { echo "slurm-test: FAILED: $*" >&2; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  if [ "${LPFT_SLURM_INSTALL:-}" = 1 ] && command -v apt-get >/dev/null; then
    echo "== installing slurm-wlm and munge (apt-get)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge) \
      >/tmp/lpft-slurm-apt.log 2>&1 || skip "apt-get install slurm-wlm munge failed (/tmp/lpft-slurm-apt.log)"
  else
    skip "slurmctld/munged not installed (apt-get install slurm-wlm munge, or LPFT_SLURM_INSTALL=1)"
  fi
fi
lpft=${1:-$repo/target/release/lpft}
if [ ! -x "$lpft" ]; then
  cargo build --release --quiet
fi
lpft=$(cd "$(dirname "$lpft")" && pwd)/$(basename "$lpft")

root=$(mktemp -d "${TMPDIR:-/tmp}/lpft-slurm.XXXXXX")
export SLURM_CONF=$root/slurm.conf
cleanup() {
  scancel --quiet --user="$(id -un)" 2>/dev/null || true
  [ -f "$root/slurmctld.pid" ] && kill "$(cat "$root/slurmctld.pid")" 2>/dev/null || true
  [ -f "$root/slurmd.pid" ] && kill "$(cat "$root/slurmd.pid")" 2>/dev/null || true
  [ -f "$root/munged.pid" ] && kill "$(cat "$root/munged.pid")" 2>/dev/null || true
  sleep 1
  rm -rf "$root"
}
trap cleanup EXIT

# ---- a single-node cluster of this machine
port=$((20000 + RANDOM % 20000))
host=$(hostname -s)
mkdir -p "$root/state" "$root/spool"
cat >"$SLURM_CONF" <<CONF
ClusterName=lpft-test
SlurmctldHost=$host
SlurmUser=$(id -un)
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$root/munge.socket
StateSaveLocation=$root/state
SlurmdSpoolDir=$root/spool
SlurmctldPidFile=$root/slurmctld.pid
SlurmdPidFile=$root/slurmd.pid
SlurmctldLogFile=$root/slurmctld.log
SlurmdLogFile=$root/slurmd.log
SlurmctldPort=$port
SlurmdPort=$((port + 1))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
NodeName=$host CPUs=$(nproc) RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
dd if=/dev/urandom of="$root/munge.key" bs=1024 count=1 2>/dev/null
chmod 400 "$root/munge.key"
munged --force --key-file="$root/munge.key" --socket="$root/munge.socket" \
  --pid-file="$root/munged.pid" --log-file="$root/munged.log" --seed-file="$root/munge.seed" \
  || skip "munged did not start"
slurmctld -c || skip "slurmctld did not start ($root/slurmctld.log)"
slurmd || skip "slurmd did not start ($root/slurmd.log)"
for _ in $(seq 30); do
  sinfo -h -o %T 2>/dev/null | grep -q idle && break
  sleep 1
done
sinfo -h -o %T | grep -q idle || skip "the node did not come up: $(sinfo 2>&1 | tail -1)"
echo "== cluster up: $(sinfo -h -o '%P %D %T %N')"

# ---- a tiny grid: 4 cells, the gradient ones long enough to be cancelled halfway
"$lpft" data --task cb --export "$root/data" >/dev/null
cat >"$root/grid.toml" <<TOML
name = "slurm-test"
model = "$repo/tests/fixtures/tiny-bert"
data_dir = "$root/data"
tasks = ["cb"]
methods = ["lp", "ft", "lora", "lp-ft"]
seeds = [1]
[overrides]
train = { epochs = 40, batch_size = 16, lr = 1e-3 }
[analyses]
features = { split = "test" }
ntk = { max_examples = 4, seeds = [1], alignment = true }
TOML

wait_jobs() { # until no job of ours is pending or running (at most $1 s)
  for _ in $(seq "$1"); do
    [ -z "$(squeue -h -o %i 2>/dev/null)" ] && return 0
    sleep 1
  done
  squeue; fail "jobs still queued after $1 s"
}
finished() { [ -f "$1/runs/base/cb/$2/seed-1/metrics.json" ]; }

echo "== 1. the whole grid through sbatch"
g1=$root/grid1
"$lpft" reproduce --config "$root/grid.toml" --out "$g1" --emit slurm --cpus-per-task 1 \
  --partition debug --time 00:20:00 >/dev/null
sh "$g1/slurm/submit.sh"
wait_jobs 600
for m in lp ft lora lp-ft; do finished "$g1" $m || fail "grid 1: cell $m not finished ($(cat "$g1"/slurm/logs/* | tail -20))"; done
[ -f "$g1/runs/base/cb/lora/seed-1/kernels/alignment.json" ] || fail "grid 1: no alignment from finish.sbatch"
[ -f "$g1/report/report.md" ] || fail "grid 1: no report"
grep -q "not finished" "$g1/report/report.md" && fail "grid 1: the report lists unfinished cells"
echo "grid 1: 4/4 cells, the alignment and the report"

echo "== 2. scancel the FT cell halfway, resubmit"
g2=$root/grid2
"$lpft" reproduce --config "$root/grid.toml" --out "$g2" --emit slurm --cpus-per-task 1 >/dev/null
array=$(sbatch --parsable "$g2/slurm/grid.sbatch"); array=${array%%;*}
ft=$g2/runs/base/cb/ft/seed-1
for _ in $(seq 300); do
  [ -f "$ft/checkpoint/state.safetensors" ] && break
  sleep 0.5
done
[ -f "$ft/checkpoint/state.safetensors" ] || fail "grid 2: the FT cell never finished an epoch"
scancel "${array}_1"
echo "cancelled task ${array}_1 (ft) after: $(tail -1 "$g2/slurm/logs/cell-1.out")"
wait_jobs 600
finished "$g2" ft && fail "grid 2: the cancelled FT cell finished anyway"
for m in lp lora lp-ft; do finished "$g2" $m || fail "grid 2: cell $m not finished"; done
before=$(stat -c '%n %Y' "$g2"/runs/base/cb/{lp,lora,lp-ft}/seed-1/metrics.json)
"$lpft" report --runs "$g2/runs" --out "$root/partial" | grep "cell(s) not finished" \
  || fail "grid 2: the report does not list the cancelled cell"
sh "$g2/slurm/submit.sh"
wait_jobs 600
finished "$g2" ft || fail "grid 2: the resubmission did not finish the FT cell"
after=$(stat -c '%n %Y' "$g2"/runs/base/cb/{lp,lora,lp-ft}/seed-1/metrics.json)
[ "$before" = "$after" ] || fail "grid 2: finished cells were run again"
for i in 0 2 3; do
  grep -q "already finished" "$g2/slurm/logs/cell-$i.out" || fail "grid 2: task $i did not skip its finished cell"
done
grep -q "resuming after epoch" "$g2/slurm/logs/cell-1.out" || fail "grid 2: the FT cell did not resume"
grep -q "not finished" "$g2/report/report.md" && fail "grid 2: the report still lists unfinished cells"
echo "grid 2: only the cancelled cell ran again ($(grep -o 'resuming after epoch [0-9]*' "$g2/slurm/logs/cell-1.out"))"
echo "slurm-test: passed"
