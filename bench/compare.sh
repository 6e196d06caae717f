#!/usr/bin/env bash
# Runs lpft's and PyTorch's benchmark workloads alternately (each workload in its own process,
# so peak memory is its own) and prints a Markdown table with time ratios.
#   bench/compare.sh [PYTHON] [THREADS] [ROUNDS]
# PYTHON: an interpreter with bench/pytorch/requirements.txt installed (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
THREADS=${2:-2}
ROUNDS=${3:-2}
cargo build --release --quiet
LPFT=./target/release/lpft
MODEL=$($LPFT fetch-model minilm)
# CB exactly as lpft finds it (--data-dir, $LPFT_DATA_DIR, ./data, $LPFT_HOME/data, embedded).
data=$(mktemp -d)
$LPFT data --task cb --export "$data" >/dev/null
tmp=$(mktemp)
for round in $(seq "$ROUNDS"); do
  for w in forward ft-step lora-step grad-logit lp-fit; do
    for d in "" "--no-dropout"; do
      if [ -n "$d" ] && [[ "$w" != *step ]]; then continue; fi
      $LPFT --threads "$THREADS" bench --workload "$w" $d --iters 5 | sed 's/^/lpft /' >>"$tmp"
      HF_HUB_OFFLINE=1 "$PY" bench/pytorch/bench.py "$MODEL" --data "$data/superglue/CB/train.jsonl" --workload "$w" $d --threads "$THREADS" | sed 's/^/torch /' >>"$tmp"
    done
  done
done
"$PY" - "$tmp" <<'PYEOF'
import json, sys, statistics
rows = {}
for line in open(sys.argv[1]):
    who, js = line.split(" ", 1)
    r = json.loads(js)
    key = (r["workload"], r["dropout"])
    rows.setdefault(key, {}).setdefault(who, []).append(r)
print("| workload | dropout | PyTorch s | lpft s | lpft / PyTorch | lpft GFLOP/s | PyTorch peak MiB | lpft peak MiB |")
print("|---|---|---|---|---|---|---|---|")
for (w, d), v in rows.items():
    t = statistics.median(x["seconds_median"] for x in v["torch"])
    l = statistics.median(x["seconds_median"] for x in v["lpft"])
    g = statistics.median(x["gflops"] for x in v["lpft"])
    # No fraction of peak: the ~185 GFLOP/s figure was an AVX2 peak, which the AVX-512 kernels exceed.
    gs = f"{g:.0f}" if g > 0 else "–"
    print(f"| {w} | {'on' if d else 'off'} | {t:.3f} | {l:.3f} | {l / t:.2f} | {gs} | {max(x['peak_rss_mib'] for x in v['torch'])} | {max(x['peak_rss_mib'] for x in v['lpft'])} |")
PYEOF
rm -rf "$tmp" "$data"
