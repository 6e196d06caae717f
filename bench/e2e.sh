#!/usr/bin/env bash
# End-to-end comparison on CB with MiniLM: the five methods trained by lpft and by the
# PyTorch reference pipeline (bench/pytorch/e2e.py: Hugging Face BertModel, padding to 128, full
# last layer, scikit-learn LP), one seed, the paper's settings. Every method runs in its own
# process on each side and is timed from the outside (process start to exit). Prints a Markdown
# table (method | lpft wall s | PyTorch wall s | ratio | test accuracies) with totals, and writes
# it with the raw numbers to OUT/e2e.md and OUT/e2e.json.
#
#   bench/e2e.sh [--python PY] [--threads N] [--seed S] [--epochs E] [--max-train-samples K]
#                [--methods lp,ft,lp-ft,lora,lp-lora] [--order alternate|lpft-first|torch-first]
#                [--out DIR]
#
# PY: an interpreter with bench/pytorch/requirements.txt installed (default $PYTHON or python3).
# Defaults: 2 threads, seed 1001, lpft's defaults for epochs (10) and the training set (all 225),
# order alternate (lpft first for the 1st, 3rd, 5th method, PyTorch first for the others), OUT
# runs/e2e/ (git-ignored). LPFT_BIN picks the lpft binary (default target/release/lpft; build it with
# `cargo build --release`). The model comes from `lpft fetch-model minilm` under $LPFT_HOME (set it
# to a cache that holds MiniLM to run without network).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
THREADS=2
SEED=1001
EPOCHS=
MAX_TRAIN=
METHODS=lp,ft,lp-ft,lora,lp-lora
ORDER=alternate
OUT=runs/e2e
while [ $# -gt 0 ]; do
  case "$1" in
    --python) PY=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --epochs) EPOCHS=$2; shift 2 ;;
    --max-train-samples) MAX_TRAIN=$2; shift 2 ;;
    --methods) METHODS=$2; shift 2 ;;
    --order) ORDER=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "e2e.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$ORDER" in alternate|lpft-first|torch-first) ;; *) echo "e2e.sh: --order alternate|lpft-first|torch-first" >&2; exit 2 ;; esac

LPFT=${LPFT_BIN:-./target/release/lpft}
if [ ! -x "$LPFT" ]; then
  echo "e2e.sh: $LPFT not found; run \`cargo build --release\` or set LPFT_BIN" >&2
  exit 1
fi
MODEL=$("$LPFT" fetch-model minilm)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -rf "$OUT/lpft" "$OUT/torch" "$OUT/logs" "$OUT/data"
mkdir -p "$OUT/lpft" "$OUT/torch" "$OUT/logs"
# CB's files exactly as lpft finds them (--data-dir, $LPFT_DATA_DIR, ./data, $LPFT_HOME/data or
# its embedded copy), for the PyTorch side.
"$LPFT" data --task cb --export "$OUT/data" >"$OUT/logs/data.log"
TIMES="$OUT/times.tsv"
: >"$TIMES"

common=(--seed "$SEED")
[ -n "$EPOCHS" ] && common+=(--epochs "$EPOCHS")
[ -n "$MAX_TRAIN" ] && common+=(--max-train-samples "$MAX_TRAIN")

now() { echo "$EPOCHREALTIME"; }

run_lpft() {
  local m=$1 t0 t1 dt
  t0=$(now)
  "$LPFT" --threads "$THREADS" train --task cb --method "$m" "${common[@]}" --out "$OUT/lpft" --overwrite \
    >"$OUT/logs/lpft-$m.log" 2>&1 || { echo "e2e.sh: lpft $m failed, see $OUT/logs/lpft-$m.log" >&2; tail -5 "$OUT/logs/lpft-$m.log" >&2; exit 1; }
  t1=$(now)
  dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  printf 'lpft\t%s\t%s\n' "$m" "$dt" >>"$TIMES"
  echo "lpft    $m: $dt s" >&2
}

run_torch() {
  local m=$1 t0 t1 dt
  t0=$(now)
  HF_HUB_OFFLINE=1 "$PY" bench/pytorch/e2e.py --methods "$m" "${common[@]}" --threads "$THREADS" \
    --model-dir "$MODEL" --data-dir "$OUT/data" --out "$OUT/torch/$m.json" >"$OUT/logs/torch-$m.log" 2>&1 \
    || { echo "e2e.sh: PyTorch $m failed, see $OUT/logs/torch-$m.log" >&2; tail -5 "$OUT/logs/torch-$m.log" >&2; exit 1; }
  t1=$(now)
  dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  printf 'torch\t%s\t%s\n' "$m" "$dt" >>"$TIMES"
  echo "PyTorch $m: $dt s" >&2
}

IFS=, read -r -a methods <<<"$METHODS"
i=0
for m in "${methods[@]}"; do
  if [ "$ORDER" = lpft-first ] || { [ "$ORDER" = alternate ] && [ $((i % 2)) -eq 0 ]; }; then
    run_lpft "$m"; run_torch "$m"
  else
    run_torch "$m"; run_lpft "$m"
  fi
  i=$((i + 1))
done

"$PY" - "$OUT" "$SEED" "$THREADS" "$ORDER" "$METHODS" <<'PYEOF'
import json, os, sys
out, seed, threads, order, methods = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5].split(",")
times = {}
for line in open(os.path.join(out, "times.tsv")):
    who, m, s = line.rstrip("\n").split("\t")
    times[(who, m)] = float(s)
rows, report = [], {"seed": int(seed), "threads": int(threads), "order": order, "methods": {}}
torch_meta, imports = None, []
for m in methods:
    lm = json.load(open(os.path.join(out, "lpft", "cb", m, f"seed-{seed}", "metrics.json")))
    man = json.load(open(os.path.join(out, "lpft", "cb", m, f"seed-{seed}", "manifest.json")))
    tj = json.load(open(os.path.join(out, "torch", f"{m}.json")))
    torch_meta = tj
    imports.append(tj["import_seconds"])
    tm = tj["methods"][m]
    lw, tw = times[("lpft", m)], times[("torch", m)]
    report["methods"][m] = {
        "lpft": {"process_seconds": lw, "wall_seconds": man.get("wall_seconds"),
                 "test_accuracy": lm["test"]["accuracy"], "test_f1_macro": lm["test"]["f1_macro"],
                 "validation_accuracy": lm["validation"]["accuracy"], "best_epoch": lm.get("best_epoch"),
                 "classifier_norm": lm["classifier_norm"], "lp_c": (lm.get("lp") or {}).get("c")},
        "torch": {"process_seconds": tw, "wall_seconds": tm["wall_seconds"], "test_accuracy": tm["test_accuracy"],
                  "test_f1_macro": tm["test_f1_macro"], "validation_accuracy": tm["validation_accuracy"],
                  "best_epoch": tm["best_epoch"], "classifier_norm": tm["classifier_norm"],
                  "lp_c": (tm.get("lp") or {}).get("c")},
    }
    rows.append((m, lw, tw, tm["wall_seconds"], lm["test"]["accuracy"], tm["test_accuracy"]))
meta = {k: torch_meta[k] for k in ("epochs", "max_train_samples", "versions", "machine", "attn")}
report.update(meta)
lines = [
    f"CB, MiniLM, seed {seed}, epochs {meta['epochs']}, train samples {meta['max_train_samples'] or 'all'}, "
    f"{threads} threads, order {order}; {meta['machine']['cpu_model']} ({meta['machine']['nproc']} cores); "
    f"torch {meta['versions']['torch']}, transformers {meta['versions']['transformers']}, "
    f"peft {meta['versions']['peft']}, scikit-learn {meta['versions']['sklearn']}",
    "",
    "| method | lpft wall s | PyTorch wall s | ratio (lpft / PyTorch) | lpft test acc | PyTorch test acc | PyTorch in-process s |",
    "|---|---|---|---|---|---|---|",
]
for m, lw, tw, ti, la, ta in rows:
    lines.append(f"| {m} | {lw:.1f} | {tw:.1f} | {lw / tw:.2f} | {la:.4f} | {ta:.4f} | {ti:.1f} |")
L, T, TI = sum(r[1] for r in rows), sum(r[2] for r in rows), sum(r[3] for r in rows)
lines.append(f"| **total** | {L:.1f} | {T:.1f} | {L / T:.2f} | | | {TI:.1f} |")
lines += ["", "Wall s: each method's whole process (start to exit: model loading, tokenisation, LP, training, "
          f"evaluation); PyTorch's includes its imports (mean {sum(imports) / len(imports):.1f} s per process), "
          "its in-process time leaves them out."]
report["total"] = {"lpft_seconds": L, "torch_seconds": T, "ratio": L / T}
md = "\n".join(lines)
print(md)
open(os.path.join(out, "e2e.md"), "w").write(md + "\n")
json.dump(report, open(os.path.join(out, "e2e.json"), "w"), indent=2)
PYEOF
