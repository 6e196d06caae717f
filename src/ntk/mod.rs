//! Empirical neural tangent kernels (spec §7): the [`kernel::Kernel`] type with its
//! `[n1, C, n2, C]` layout, the pre-train-effective component P of Proposition 4.1
//! ([`kernel::pretrain_kernel`]), the FT-effective component F computed exactly layer by layer
//! ([`layerwise`], configured by [`config::EntkConfig`]), its slow full-gradient reference for
//! tiny models and the paper code's full-Jacobian way ([`reference`](mod@reference)), the
//! run-directory stage behind `lpft ntk`
//! ([`run`]), and the kernel logistic regression behind the paper's "Acc" columns
//! ([`regression`]). Kernel statistics (rank, FN, FT ratio, spectra) live in
//! [`crate::analysis::kernel_stats`].

pub mod config;
pub mod kernel;
pub mod layerwise;
pub mod reference;
pub mod regression;
pub mod run;

pub use config::{Contraction, EntkConfig, ForwardPath, ParamSet};
pub use layerwise::{compute, compute_train_eval, EntkProgress, EntkResult, ParamGroup};
