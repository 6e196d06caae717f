//! Progress of the training stages: the per-epoch record (`history.jsonl`) and the callbacks
//! through which callers see it; the library never prints.

use serde::{Deserialize, Serialize};

use crate::calibration::metrics::Metrics;

/// One epoch of the history (`history.jsonl`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// Mean global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate after the epoch's last step.
    pub lr: f64,
    /// ‖V‖_F at the end of the epoch.
    pub classifier_norm: f64,
    pub validation: Metrics,
    /// Wall time of the epoch (training and evaluation), seconds.
    pub seconds: f64,
    /// Training examples per second.
    pub examples_per_s: f64,
}

/// Progress callbacks; the library never prints. Every method has a no-op default.
pub trait Observer {
    /// A stage begins or a notable event happens (one line of text).
    fn stage(&mut self, _message: &str) {}
    /// An epoch begins.
    fn start_epoch(&mut self, _epoch: usize, _epochs: usize, _steps: usize) {}
    /// A training step finished.
    fn step(&mut self, _step: usize, _loss: f64, _examples: usize) {}
    /// An epoch finished (training and validation).
    fn end_epoch(&mut self, _record: &EpochRecord) {}
}

/// An observer that ignores everything.
pub struct SilentObserver;
impl Observer for SilentObserver {}
