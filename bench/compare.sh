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
. bench/setup.sh
for round in $(seq "$ROUNDS"); do
  for w in forward ft-step lora-step grad-logit lp-fit; do
    for d in "" "--no-dropout"; do
      if [ -n "$d" ] && [[ "$w" != *step ]]; then continue; fi
      $LPFT --threads "$THREADS" bench --workload "$w" $d --iters 5 | sed 's/^/lpft /' >>"$tmp"
      HF_HUB_OFFLINE=1 "$PY" bench/pytorch/bench.py "$MODEL" --data "$data/superglue/CB/train.jsonl" --workload "$w" $d --threads "$THREADS" | sed 's/^/torch /' >>"$tmp"
      # bf16 mixed precision: lpft --precision bf16 beside torch.autocast(bfloat16).
      if [[ "$w" == *step ]]; then
        $LPFT --threads "$THREADS" bench --workload "$w" $d --iters 5 --precision bf16 | sed 's/^/lpft /' >>"$tmp"
        HF_HUB_OFFLINE=1 "$PY" bench/pytorch/bench.py "$MODEL" --data "$data/superglue/CB/train.jsonl" --workload "$w" $d --threads "$THREADS" --bf16 | sed 's/^/torch /' >>"$tmp"
      fi
    done
  done
done
"$PY" - "$tmp" <<'PYEOF'
import json, sys, statistics
rows = {}
for line in open(sys.argv[1]):
    who, js = line.split(" ", 1)
    r = json.loads(js)
    bf16 = r.get("precision") == "bf16" or r.get("bf16") is True
    key = (r["workload"], r["dropout"], bf16)
    rows.setdefault(key, {}).setdefault(who, []).append(r)
med = lambda v, who: statistics.median(x["seconds_median"] for x in v[who])
print("| workload | dropout | precision | PyTorch s | lpft s | lpft / PyTorch | lpft / PyTorch fp32 | lpft GFLOP/s | PyTorch peak MiB | lpft peak MiB |")
print("|---|---|---|---|---|---|---|---|---|---|")
for (w, d, bf16), v in rows.items():
    t, l = med(v, "torch"), med(v, "lpft")
    g = statistics.median(x["gflops"] for x in v["lpft"])
    # No fraction of peak: the ~185 GFLOP/s figure was an AVX2 peak, which the AVX-512 kernels exceed.
    gs = f"{g:.0f}" if g > 0 else "–"
    fp32 = rows.get((w, d, False))
    vs32 = f"{l / med(fp32, 'torch'):.2f}" if bf16 and fp32 else "–"
    p = "bf16 (PyTorch: autocast)" if bf16 else "fp32"
    print(f"| {w} | {'on' if d else 'off'} | {p} | {t:.3f} | {l:.3f} | {l / t:.2f} | {vs32} | {gs} | {max(x['peak_rss_mib'] for x in v['torch'])} | {max(x['peak_rss_mib'] for x in v['lpft'])} |")
PYEOF
