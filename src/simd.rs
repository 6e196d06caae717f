//! Runtime dispatch to the widest vector instructions the CPU has, for the host-side kernels
//! (the fused model ops, the optimiser update).

/// Runs `f` compiled for AVX-512 or AVX2+FMA where the CPU has them, else for the baseline.
/// `f` and what it calls should be `#[inline(always)]` so the wider code reaches them.
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}
