#!/usr/bin/env bash
# The eNTK's F against PyTorch: lpft's layer-wise F (`lpft bench --workload entk
# --reference-examples 0`) and bench/pytorch/bench.py's `entk` workload (per example one forward
# and C vector-Jacobian products over every encoder parameter, then J Jᵀ in f64) on the same first
# N CB training pairs, MiniLM, alternately, each in its own process. Prints both medians and the
# ratio (the regression guard of issue 15: lpft / PyTorch <= 0.25).
#   bench/entk.sh [PYTHON] [THREADS] [ROUNDS] [N]
# PyTorch holds J (N·3·22.6M f32 values: 4.3 GB at N = 16), so N stays small; lpft's time per
# example grows with N (the contraction is ~N²), which makes a small N the harder side for lpft.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
THREADS=${2:-2}
ROUNDS=${3:-2}
N=${4:-16}
. bench/setup.sh
for _ in $(seq "$ROUNDS"); do
  $LPFT --threads "$THREADS" bench --workload entk --ntk-examples "$N" --reference-examples 0 | grep '^{' | sed 's/^/lpft /' >>"$tmp"
  HF_HUB_OFFLINE=1 "$PY" bench/pytorch/bench.py "$MODEL" --data "$data/superglue/CB/train.jsonl" --workload entk --ntk-examples "$N" --runs 1 --threads "$THREADS" | sed 's/^/torch /' >>"$tmp"
done
"$PY" - "$tmp" "$N" "$THREADS" <<'PYEOF'
import json, statistics, sys
lp, pt = [], []
for line in open(sys.argv[1]):
    who, js = line.split(" ", 1)
    r = json.loads(js)
    (lp if who == "lpft" else pt).append(r)
l = statistics.median(r["fast_seconds"] for r in lp)
t = statistics.median(r["seconds_median"] for r in pt)
n = int(sys.argv[2])
print("| F on N CB examples, MiniLM | threads | PyTorch s | lpft s | PyTorch s / example | lpft s / example | lpft / PyTorch | PyTorch peak MiB | lpft peak MiB |")
print("|---|---|---|---|---|---|---|---|---|")
print(f"| N = {n} | {sys.argv[3]} | {t:.1f} | {l:.1f} | {t / n:.2f} | {l / n:.2f} | **{l / t:.2f}** | "
      f"{max(r['peak_rss_mib'] for r in pt)} | {max(r['fast_peak_rss_mib'] for r in lp)} |")
PYEOF
