//! Analyses on plain host arrays (docs/method.md §6–§8): feature and classifier statistics
//! CS(F), Diff(F), FDR(F), Norm(C) ([`features`]) and kernel statistics Rank, FN, FT ratio,
//! spectra and alignment ([`kernel_stats`]). No model code and no files: callers (the stages)
//! pass features, head weights and kernels ([`crate::ntk::kernel::Kernel`]).

pub mod features;
pub mod kernel_stats;
