//! The paper's five methods (spec §2–§3): LP, FT, LP-FT, LoRA, LP-LoRA.
//!
//! [`run()`] executes one (task, method, seed) cell into a run directory: LP fits an L2 logistic
//! regression on frozen features; FT and LoRA train by AdamW with linear decay, gradient
//! clipping and dropout, evaluating on the validation split after every epoch and keeping the
//! best checkpoint; LP-FT / LP-LoRA install the LP head first.

pub mod checkpoint;
pub mod config;
pub mod evaluate;
pub mod export;
pub mod load;
pub mod lp;
pub mod optim;
pub mod run;
pub mod schedule;
pub mod train;

pub use config::{Method, RunConfig, TrainConfig};
pub use run::{run, Observer, RunOutcome, SilentObserver};
