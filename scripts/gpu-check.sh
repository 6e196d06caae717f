#!/usr/bin/env bash
# The GPU check: one prepared command for a machine with a CUDA GPU, under 10 minutes. Run it
# whenever a GPU is lent and copy its summary into README ("GPUs").
#   1. build lpft with --features cuda (nvcc from PATH, else scripts/cuda-toolkit.sh), unless
#      LPFT_BIN and LPFT_GPU_TESTS name binaries built beforehand;
#   2. CPU against GPU: logits, every parameter's gradient and one AdamW step, on the tiny
#      BERT/RoBERTa/MPNet fixtures and MiniLM (tests/it/gpu.rs);
#   3. FT and LoRA steps timed on the GPU: `lpft bench --device cuda`, and PyTorch's
#      bench/pytorch/bench.py on the same GPU in fp32 and bf16 autocast when $PYTHON has torch
#      with CUDA (a visible `skipped:` line otherwise);
#   4. one CB LP-FT training end to end on the GPU (2 epochs), with its test accuracy.
# Results: $OUT (default target/gpu-check): gpu-check.log and the run directory.
#
#   scripts/gpu-check.sh          MODEL=<MiniLM dir> PYTHON=<python with torch> optional
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-target/gpu-check}
mkdir -p "$out"
log="$out/gpu-check.log"
exec > >(tee "$log") 2>&1
status=0
fail() { echo "FAILED: $*"; status=1; }
t0=$SECONDS
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader \
  || { echo "gpu-check: no NVIDIA GPU here (nvidia-smi failed)"; exit 2; }
cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d '.[:space:]')

echo "== 1. build with --features cuda (sm_$cap)"
if [ -z "${LPFT_BIN:-}" ] || [ -z "${LPFT_GPU_TESTS:-}" ]; then
  if ! command -v nvcc >/dev/null; then
    root=$(bash scripts/cuda-toolkit.sh) || exit 2
    export PATH="$root/bin:$PATH" CUDA_HOME="$root" CUDA_PATH="$root" CUDA_ROOT="$root"
  fi
  export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-$cap}
  cargo build --release --features cuda || exit 2
  LPFT_BIN=target/release/lpft
  LPFT_GPU_TESTS=$(cargo test --release --features cuda --test it --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
fi
model=${MODEL:-$("$LPFT_BIN" fetch-model minilm 2>/dev/null || true)}
[ -n "$model" ] || echo "skipped: MiniLM (no MODEL= and none in the cache); the tiny fixtures only"

echo "== 2. CPU against GPU: logits, gradients, AdamW"
LPFT_GPU_MODEL_DIR=$model "$LPFT_GPU_TESTS" gpu:: --ignored --nocapture --test-threads 1 \
  || fail "CPU/GPU parity"

echo "== 3. FT and LoRA steps on the GPU (16 x 128, MiniLM)"
if [ -n "$model" ]; then
  for w in ft-step lora-step; do
    "$LPFT_BIN" --device cuda bench --model "$model" --workload "$w" --iters 10 | tail -n 1 \
      | sed 's/^/lpft /' || fail "lpft bench $w"
  done
  py=${PYTHON:-python3}
  if "$py" -c 'import torch, transformers, peft; assert torch.cuda.is_available()' 2>/dev/null; then
    data="$out/data"
    "$LPFT_BIN" data --task cb --export "$data" >/dev/null
    for w in ft-step lora-step; do
      for bf in "" --bf16; do
        "$py" bench/pytorch/bench.py "$model" --data "$data/superglue/CB/train.jsonl" \
          --workload "$w" --device cuda $bf --runs 10 | sed 's/^/torch /' || fail "torch $w $bf"
      done
    done
  else
    echo "skipped: PyTorch on the GPU ($py has no torch with CUDA, transformers and peft)"
  fi
else
  echo "skipped: step timings (no MiniLM)"
fi

echo "== 4. CB LP-FT end to end on the GPU (2 epochs)"
rm -rf "$out/runs"
if [ -n "$model" ]; then
  "$LPFT_BIN" --device cuda train --task cb --method lp-ft --model "$model" --epochs 2 \
    --seed 1 --out "$out/runs" | tail -n 3 || fail "CB LP-FT on the GPU"
else
  echo "skipped: CB LP-FT (no MiniLM)"
fi
echo "gpu-check: $((SECONDS - t0)) s, $([ $status = 0 ] && echo passed || echo FAILED)"
exit $status
