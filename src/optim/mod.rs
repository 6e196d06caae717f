//! Optimisers: AdamW with its learning-rate schedule and gradient clipping (the gradient stage),
//! and L-BFGS (the linear probe).

pub mod adamw;
pub mod lbfgs;
pub mod schedule;

pub use adamw::{AdamW, AdamWConfig, Moments};
pub use schedule::{clip_factor, global_grad_norm, LinearSchedule};
