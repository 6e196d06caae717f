//! Empirical neural tangent kernels (spec §7): the [`kernel::Kernel`] type with its
//! `[n1, C, n2, C]` layout, the pre-train-effective component P of Proposition 4.1
//! ([`kernel::pretrain_kernel`]), and the kernel logistic regression behind the paper's "Acc"
//! columns ([`regression`]). Kernel statistics (rank, FN, FT ratio, spectra) live in
//! [`crate::analysis::kernel_stats`].

pub mod kernel;
pub mod regression;
