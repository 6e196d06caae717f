#!/usr/bin/env bash
# How an FT step's time grows with sequence length and batch size, lpft beside PyTorch, at 1 and 2
# threads; and each one's parallel fraction p from its 1- and 2-thread times (Amdahl:
# t(n) = t(1)·((1 − p) + p/n)), extrapolated to 16, 32 and 64 cores.
#   bench/scaling.sh [PYTHON] [ROUNDS]
# PYTHON: an interpreter with bench/pytorch/requirements.txt installed (default python3).
# Two points fix p only roughly (memory bandwidth and the GEMM's blocking change with the core
# count); the extrapolation says which of the two scales better, not what a server will measure.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
ROUNDS=${2:-1}
. bench/setup.sh
for round in $(seq "$ROUNDS"); do
  for shape in 16x64 16x128 16x256 16x512 8x128 32x128; do
    b=${shape%x*}; s=${shape#*x}
    for t in 1 2; do
      $LPFT --threads "$t" bench --workload ft-step --batch "$b" --seq "$s" --iters 3 | sed "s/^/lpft $t /" >>"$tmp"
      HF_HUB_OFFLINE=1 "$PY" bench/pytorch/bench.py "$MODEL" --data "$data/superglue/CB/train.jsonl" \
        --workload ft-step --batch "$b" --seq "$s" --runs 3 --threads "$t" 2>/dev/null | sed "s/^/torch $t /" >>"$tmp"
    done
  done
done
"$PY" - "$tmp" <<'PYEOF'
import json, sys, statistics
rows = {}
for line in open(sys.argv[1]):
    who, t, js = line.split(" ", 2)
    r = json.loads(js)
    rows.setdefault((r["batch"], r["seq"]), {}).setdefault((who, int(t)), []).append(r["seconds_median"])
med = lambda v: statistics.median(v)
def amdahl(t1, t2):
    p = max(0.0, min(1.0, 2.0 * (1.0 - t2 / t1)))
    return p, [t1 * ((1 - p) + p / n) for n in (16, 32, 64)]
print("| batch × seq | PyTorch 1 thr s | lpft 1 thr s | PyTorch 2 thr s | lpft 2 thr s | lpft / PyTorch (2 thr) | p PyTorch | p lpft | lpft / PyTorch at 16 / 32 / 64 cores |")
print("|---|---|---|---|---|---|---|---|---|")
for (b, s), v in rows.items():
    t1, t2 = med(v[("torch", 1)]), med(v[("torch", 2)])
    l1, l2 = med(v[("lpft", 1)]), med(v[("lpft", 2)])
    pt, et = amdahl(t1, t2)
    pl, el = amdahl(l1, l2)
    ext = " / ".join(f"{a / b_:.2f}" for a, b_ in zip(el, et))
    print(f"| {b} × {s} | {t1:.3f} | {l1:.3f} | {t2:.3f} | {l2:.3f} | {l2 / t2:.2f} | {pt:.2f} | {pl:.2f} | {ext} |")
PYEOF
