//! Peak multiply-accumulate throughput of one core: AVX-512 f32 FMA (`vfmadd231ps`, 16 MACs per
//! instruction) against AVX512_BF16's dot product (`vdpbf16ps`, 32 MACs per instruction), each
//! over 24 independent accumulators so that neither is bound by its latency. Tells whether a
//! bf16 GEMM kernel could beat the f32 one on this CPU (`bench/peak.sh`).
use std::arch::x86_64::*;
use std::hint::black_box;
use std::time::Instant;

const CHAINS: usize = 24;

#[target_feature(enable = "avx512f")]
fn fma(iters: usize) -> f32 {
    let mut acc = [_mm512_setzero_ps(); CHAINS];
    let a = _mm512_set1_ps(black_box(1.0));
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm512_fmadd_ps(a, a, *x);
        }
    }
    acc.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
}

#[target_feature(enable = "avx512f,avx512bf16")]
fn dpbf16(iters: usize) -> f32 {
    let mut acc = [_mm512_setzero_ps(); CHAINS];
    // Every lane holds the pair (1.0, 1.0) in bf16.
    let ones = _mm512_set1_ps(black_box(1.0));
    let a = _mm512_cvtne2ps_pbh(ones, ones);
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm512_dpbf16_ps(*x, a, a);
        }
    }
    acc.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
}

fn main() {
    if !is_x86_feature_detected!("avx512bf16") {
        println!("this CPU has no AVX512_BF16: nothing to compare");
        return;
    }
    let iters = 20_000_000;
    for round in 1..=3 {
        let t = Instant::now();
        let f = unsafe { fma(iters) };
        let f32_gmacs = (iters * CHAINS * 16) as f64 / t.elapsed().as_secs_f64() / 1e9;
        let t = Instant::now();
        let b = unsafe { dpbf16(iters) };
        let bf16_gmacs = (iters * CHAINS * 32) as f64 / t.elapsed().as_secs_f64() / 1e9;
        assert_eq!(f, b, "both loops must do the same number of MACs");
        println!(
            "round {round}: f32 FMA {f32_gmacs:.1} GMAC/s, vdpbf16ps {bf16_gmacs:.1} GMAC/s, bf16 / f32 {:.2}",
            bf16_gmacs / f32_gmacs
        );
    }
}
