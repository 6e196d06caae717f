//! The paper's five methods (docs/method.md §2–§3): LP, FT, LP-FT, LoRA, LP-LoRA.
//!
//! LP fits an L2 logistic regression on frozen features ([`lp`]); FT and LoRA train by AdamW
//! with linear decay, gradient clipping and dropout, evaluating on the validation split after
//! every epoch and keeping the best checkpoint ([`train`]); LP-FT / LP-LoRA install the LP head
//! first. No run-directory I/O here: the stages ([`crate::stages`]) do that.

pub mod config;
pub mod evaluate;
pub mod lp;
pub mod progress;
pub mod train;

pub use config::{Method, RunConfig, TrainConfig};
pub use progress::{EpochRecord, Observer, SilentObserver};
