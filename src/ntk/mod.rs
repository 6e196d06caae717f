//! Empirical neural tangent kernels (docs/method.md §7): the [`kernel::Kernel`] type with its
//! `[n1, C, n2, C]` layout, the pre-train-effective component P of Proposition 4.1
//! ([`kernel::pretrain_kernel`]), the FT-effective component F computed exactly layer by layer
//! ([`layerwise`], configured by [`config::EntkConfig`]), its slow full-gradient reference for
//! tiny models and the paper code's full-Jacobian way ([`reference`](mod@reference)), and the
//! kernel logistic regression behind the paper's "Acc" columns ([`regression`]). Kernel
//! statistics (rank, FN, FT ratio, spectra) are analyses, one layer up; the stage that computes
//! a run's kernels is `crate::stages::ntk`.

pub mod config;
pub mod kernel;
pub mod layerwise;
pub mod reference;
pub mod regression;

pub use config::{Contraction, ContractionPrecision, EntkConfig, ForwardPath, ParamSet};
pub use layerwise::{compute, compute_train_eval, EntkProgress, EntkResult, ParamGroup};
