#!/usr/bin/env bash
# One core's peak multiply-accumulate rate, f32 FMA against AVX512_BF16's vdpbf16ps (see
# bench/peak/main.rs): whether a bf16 GEMM kernel could be faster than the f32 one here.
set -euo pipefail
cd "$(dirname "$0")/peak"
out=$(mktemp -d)
rustc --edition 2021 -O -C target-cpu=native main.rs -o "$out/peak"
grep -m1 "model name" /proc/cpuinfo
"$out/peak"
